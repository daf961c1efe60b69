//! Per-request sampling over one row of logits: greedy at temperature 0, else temperature and
//! nucleus (top_p) sampling from the request's own seeded generator.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
}

pub struct Sampler {
    sampling: Sampling,
    rng: fastrand::Rng,
    // Scratch, kept between steps so a step allocates nothing.
    candidates: Vec<(f32, u32)>,
}

impl Sampler {
    pub fn new(sampling: Sampling) -> Self {
        let rng = sampling
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Self {
            sampling,
            rng,
            candidates: Vec::new(),
        }
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
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
            if target <= 0.0 {
                return id;
            }
        }
        self.candidates[kept - 1].1
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

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut s = Sampler::new(Sampling {
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
        });
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9]), 1);
    }

    #[test]
    fn a_seed_repeats_its_samples() {
        let sampling = Sampling {
            temperature: 1.0,
            top_p: 1.0,
            seed: Some(7),
        };
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |n| {
            let mut s = Sampler::new(sampling);
            (0..n).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(20), draw(20));
    }

    #[test]
    fn a_small_top_p_keeps_only_the_likeliest() {
        let mut s = Sampler::new(Sampling {
            temperature: 1.0,
            top_p: 0.1,
            seed: Some(1),
        });
        let logits = [0.0, 10.0, 0.0, 0.0];
        assert!((0..100).all(|_| s.sample(&logits) == 1));
    }
}
