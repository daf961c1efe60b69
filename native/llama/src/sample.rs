//! Per-request sampling over one row of logits: OpenAI's `logit_bias` and penalties, a grammar's
//! mask, then greedy at temperature 0, else temperature and nucleus (top_p) sampling from the
//! request's own seeded generator; logprobs on the way.
//!
//! The order is the MLX engine's (mlx-lm's logits processors, then its sampler), so both
//! engines report the same logprobs: log-softmax over the logits after bias, penalties and
//! mask, before temperature.

use std::collections::HashMap;

/// A bias at or below this bans the token, as OpenAI documents (adding -100 does not always).
pub const BAN: f32 = -100.0;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
    /// OpenAI's penalties, over the tokens this request generated (the prompt does not count).
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// (token id, bias) pairs.
    pub logit_bias: Vec<(u32, f32)>,
    /// Logprobs of each sampled token with this many alternatives (None: no logprobs).
    pub logprobs: Option<u32>,
}

impl Sampling {
    pub fn greedy() -> Self {
        Self {
            top_p: 1.0,
            ..Self::default()
        }
    }
}

/// A sampled token's logprob and the likeliest alternatives', most likely first.
#[derive(Debug, Clone, PartialEq)]
pub struct Logprobs {
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    pub logprobs: Option<Logprobs>,
}

pub struct Sampler {
    sampling: Sampling,
    rng: fastrand::Rng,
    /// How often each token was generated (only kept with penalties).
    counts: HashMap<u32, u32>,
    // Scratch, kept between steps so a step allocates nothing.
    candidates: Vec<(f32, u32)>,
    processed: Vec<f32>,
}

impl Sampler {
    pub fn new(sampling: Sampling) -> Self {
        let rng = sampling
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Self {
            sampling,
            rng,
            counts: HashMap::new(),
            candidates: Vec::new(),
            processed: Vec::new(),
        }
    }

    fn penalised(&self) -> bool {
        self.sampling.presence_penalty != 0.0 || self.sampling.frequency_penalty != 0.0
    }

    /// The next token from `raw` logits; `allowed` is a grammar's bitset of the tokens that may
    /// come next (bit `i % 32` of word `i / 32`), None when free.
    pub fn sample(&mut self, raw: &[f32], allowed: Option<&[u32]>) -> Sampled {
        let plain = allowed.is_none() && self.sampling.logit_bias.is_empty() && !self.penalised();
        let mut processed = std::mem::take(&mut self.processed);
        let logits = if plain {
            raw
        } else {
            processed.clear();
            processed.extend_from_slice(raw);
            self.process(&mut processed, allowed);
            &processed[..]
        };
        let token = self.pick(logits);
        let logprobs = self
            .sampling
            .logprobs
            .map(|top| logprobs(logits, token, top));
        self.processed = processed;
        if self.penalised() {
            *self.counts.entry(token).or_insert(0) += 1;
        }
        Sampled { token, logprobs }
    }

    fn process(&self, logits: &mut [f32], allowed: Option<&[u32]>) {
        for &(token, bias) in &self.sampling.logit_bias {
            if let Some(l) = logits.get_mut(token as usize) {
                *l = if bias <= BAN {
                    f32::NEG_INFINITY
                } else {
                    *l + bias
                };
            }
        }
        let (presence, frequency) = (
            self.sampling.presence_penalty,
            self.sampling.frequency_penalty,
        );
        for (&token, &count) in &self.counts {
            if let Some(l) = logits.get_mut(token as usize) {
                *l -= count as f32 * frequency + presence;
            }
        }
        // Last, so no bias brings back a token the grammar forbids.
        if let Some(mask) = allowed {
            apply_mask(logits, mask);
        }
    }

    fn pick(&mut self, logits: &[f32]) -> u32 {
        if self.sampling.temperature <= 0.0 {
            return argmax(logits);
        }
        let inv_t = 1.0 / self.sampling.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        self.candidates.clear();
        self.candidates.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (((l - max) * inv_t).exp(), i as u32)),
        );
        let kept = if self.sampling.top_p < 1.0 {
            nucleus(&mut self.candidates, self.sampling.top_p)
        } else {
            self.candidates.len()
        };
        let total: f32 = self.candidates[..kept].iter().map(|c| c.0).sum();
        let mut target = self.rng.f32() * total;
        for &(p, id) in &self.candidates[..kept] {
            target -= p;
            if target <= 0.0 && p > 0.0 {
                return id;
            }
        }
        // Rounding left some mass: the last candidate that can be drawn at all.
        self.candidates[..kept]
            .iter()
            .rev()
            .find(|c| c.0 > 0.0)
            .map_or_else(|| argmax(logits), |c| c.1)
    }
}

/// Logits of tokens the bitset does not allow become -inf (ids past it too).
fn apply_mask(logits: &mut [f32], mask: &[u32]) {
    for (w, chunk) in logits.chunks_mut(32).enumerate() {
        let word = mask.get(w).copied().unwrap_or(0);
        if word == u32::MAX {
            continue;
        }
        for (bit, l) in chunk.iter_mut().enumerate() {
            if word >> bit & 1 == 0 {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// `token`'s log-softmax and the `top` likeliest tokens', most likely first.
fn logprobs(logits: &[f32], token: u32, top: u32) -> Logprobs {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let lse = max + sum.ln();
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top as usize + 1);
    for (i, &l) in logits.iter().enumerate() {
        if best.len() == top as usize && best.last().is_none_or(|b| l <= b.1) {
            continue;
        }
        let at = best.partition_point(|b| b.1 >= l);
        best.insert(at, (i as u32, l));
        best.truncate(top as usize);
    }
    Logprobs {
        logprob: logits[token as usize] - lse,
        // A token the mask or a ban removed is no alternative (and -inf is no JSON number).
        top: best
            .into_iter()
            .filter(|b| b.1.is_finite())
            .map(|(id, l)| (id, l - lse))
            .collect(),
    }
}

/// The first index of the largest logit (llama.cpp's greedy sampler picks the same).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Sorts the candidates by weight, most likely first; how many make up `top_p` of the mass.
fn nucleus(candidates: &mut [(f32, u32)], top_p: f32) -> usize {
    candidates.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let total: f32 = candidates.iter().map(|c| c.0).sum();
    let mut mass = 0.0;
    for (i, c) in candidates.iter().enumerate() {
        mass += c.0;
        if mass >= top_p * total {
            return i + 1;
        }
    }
    candidates.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(temperature: f32, top_p: f32, seed: Option<u64>) -> Sampling {
        Sampling {
            temperature,
            top_p,
            seed,
            ..Sampling::default()
        }
    }

    fn token(s: &mut Sampler, logits: &[f32]) -> u32 {
        s.sample(logits, None).token
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut s = Sampler::new(Sampling::greedy());
        assert_eq!(token(&mut s, &[0.1, 3.0, -1.0, 2.9]), 1);
    }

    #[test]
    fn a_seed_repeats_its_samples() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |n| {
            let mut s = Sampler::new(sampling(1.0, 1.0, Some(7)));
            (0..n).map(|_| token(&mut s, &logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(20), draw(20));
    }

    #[test]
    fn a_small_top_p_keeps_only_the_likeliest() {
        let mut s = Sampler::new(sampling(1.0, 0.1, Some(1)));
        let logits = [0.0, 10.0, 0.0, 0.0];
        assert!((0..100).all(|_| token(&mut s, &logits) == 1));
    }

    #[test]
    fn a_mask_allows_only_its_tokens_greedy_or_sampled() {
        let logits: Vec<f32> = (0..70).map(|i| i as f32 * 0.01).collect();
        // Tokens 3 and 40 only: 40 is the larger.
        let mask = [1u32 << 3, 1 << 8, 0];
        let mut greedy = Sampler::new(Sampling::greedy());
        assert_eq!(greedy.sample(&logits, Some(&mask)).token, 40);
        let mut hot = Sampler::new(sampling(5.0, 1.0, Some(3)));
        for _ in 0..200 {
            assert!(matches!(hot.sample(&logits, Some(&mask)).token, 3 | 40));
        }
    }

    #[test]
    fn a_bias_of_minus_100_bans_and_plus_100_forces() {
        let logits = [0.0, 5.0, 1.0];
        let mut ban = Sampler::new(Sampling {
            logit_bias: vec![(1, -100.0)],
            ..Sampling::greedy()
        });
        assert_eq!(token(&mut ban, &logits), 2);
        let mut force = Sampler::new(Sampling {
            logit_bias: vec![(0, 100.0)],
            ..sampling(1.0, 1.0, Some(9))
        });
        assert!((0..50).all(|_| token(&mut force, &logits) == 0));
    }

    #[test]
    fn penalties_count_every_generated_token() {
        // Greedy with a frequency penalty of 1: token 0 leads by 2.5, so it is taken three
        // times (its lead 2.5, 1.5, 0.5) before token 1 overtakes it.
        let logits = [2.5, 0.0];
        let mut s = Sampler::new(Sampling {
            frequency_penalty: 1.0,
            ..Sampling::greedy()
        });
        let tokens: Vec<u32> = (0..4).map(|_| token(&mut s, &logits)).collect();
        assert_eq!(tokens, [0, 0, 0, 1]);
        // A presence penalty counts a token once: 0 leads by 2.5, then by 0.5 forever.
        let mut p = Sampler::new(Sampling {
            presence_penalty: 2.0,
            ..Sampling::greedy()
        });
        assert!((0..5).all(|_| token(&mut p, &logits) == 0));
    }

    #[test]
    fn logprobs_are_the_log_softmax_before_temperature_with_the_top_in_order() {
        let logits = [1.0f32, 3.0, 2.0, 0.0];
        let mut s = Sampler::new(Sampling {
            logprobs: Some(2),
            ..sampling(0.5, 1.0, Some(4))
        });
        let out = s.sample(&logits, None);
        let lse = logits.iter().map(|l| l.exp()).sum::<f32>().ln();
        let lp = out.logprobs.unwrap();
        assert!((lp.logprob - (logits[out.token as usize] - lse)).abs() < 1e-5);
        let ids: Vec<u32> = lp.top.iter().map(|t| t.0).collect();
        assert_eq!(ids, [1, 2]);
        assert!((lp.top[0].1 - (3.0 - lse)).abs() < 1e-5);
        // Masked tokens are impossible: -inf.
        let mut m = Sampler::new(Sampling {
            logprobs: Some(0),
            ..Sampling::greedy()
        });
        let out = m.sample(&logits, Some(&[0b0001]));
        assert_eq!(out.token, 0);
        assert!(out.logprobs.unwrap().logprob.abs() < 1e-6);
    }
}
