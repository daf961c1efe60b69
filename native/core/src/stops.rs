//! Stop strings over streamed text: text that may still become a stop match is held back,
//! so nothing is ever emitted and then retracted.

#[derive(Debug, Default, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        Self {
            stops,
            held: String::new(),
        }
    }

    /// Adds `text` and appends to `out` what may be shown now. True once a stop string matched:
    /// the text before it is emitted and everything after is dropped.
    pub fn push(&mut self, text: &str, out: &mut String, last: bool) -> bool {
        if self.stops.is_empty() {
            out.push_str(text);
            return false;
        }
        self.held.push_str(text);
        let first_hit = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_hit {
            out.push_str(&self.held[..at]);
            self.held.clear();
            return true;
        }
        let keep = if last { 0 } else { self.partial_match_len() };
        let emit = self.held.len() - keep;
        out.push_str(&self.held[..emit]);
        self.held.drain(..emit);
        false
    }

    /// The longest tail of the held text that is a proper prefix of some stop string.
    fn partial_match_len(&self) -> usize {
        let mut keep = 0;
        for stop in &self.stops {
            // Char boundaries of the stop, longest proper prefix first.
            for (n, _) in stop.char_indices().rev() {
                if n > keep && self.held.ends_with(&stop[..n]) {
                    keep = n;
                    break;
                }
            }
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| (*s).to_string()).collect());
        let mut outs = vec![];
        for (i, p) in pieces.iter().enumerate() {
            let mut out = String::new();
            let stopped = m.push(p, &mut out, i + 1 == pieces.len());
            outs.push(out);
            if stopped {
                return (outs, true);
            }
        }
        (outs, false)
    }

    #[test]
    fn no_stops_passes_text_through() {
        assert_eq!(run(&[], &["a", "b"]), (vec!["a".into(), "b".into()], false));
    }

    #[test]
    fn stop_across_pieces_is_held_then_cut() {
        let (outs, stopped) = run(&["END"], &["hello E", "N", "D tail"]);
        assert!(stopped);
        assert_eq!(outs, vec!["hello ", "", ""]);
    }

    #[test]
    fn false_alarm_is_released() {
        let (outs, stopped) = run(&["END"], &["hello E", "NX"]);
        assert!(!stopped);
        assert_eq!(outs.concat(), "hello ENX");
        assert_eq!(outs[0], "hello ");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (outs, _) = run(&["zz", "b"], &["abzz"]);
        assert_eq!(outs, vec!["a"]);
    }

    #[test]
    fn multibyte_stop_prefixes_respect_char_boundaries() {
        let (outs, stopped) = run(&["é!"], &["café", "?"]);
        assert!(!stopped);
        assert_eq!(outs, vec!["caf", "é?"]);
    }

    #[test]
    fn last_piece_flushes_partial_match() {
        let (outs, stopped) = run(&["END"], &["xE", "N"]);
        assert!(!stopped);
        assert_eq!(outs.concat(), "xEN");
    }
}
