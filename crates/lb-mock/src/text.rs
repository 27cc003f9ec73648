//! The canonical answer text, the prompt-token estimate and the small
//! deterministic hash functions the mock uses instead of a stateful RNG.

/// The fixed word list the canonical answer cycles through: token `i` of an
/// answer is `WORDS[i % WORDS.len()]`.
pub const WORDS: [&str; 26] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
];

/// The word of token `i` of the canonical answer (without its trailing space).
pub fn canonical_word(i: u32) -> &'static str {
    WORDS[i as usize % WORDS.len()]
}

/// The canonical answer of `n` tokens: the first `n` words of the cycling
/// [`WORDS`] list joined by single spaces (no trailing space).
///
/// This is exactly the `message.content` of a non-streamed chat completion
/// with `n` completion tokens, and the concatenation of the `delta.content`
/// of the token chunks of a streamed one.
///
/// ```
/// assert_eq!(lb_mock::canonical_text(3), "alpha bravo charlie");
/// assert_eq!(lb_mock::canonical_text(0), "");
/// ```
pub fn canonical_text(n: u32) -> String {
    let mut s = String::with_capacity(n as usize * 7);
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(canonical_word(i));
    }
    s
}

/// Number of whitespace-separated words in `s` (the mock's token estimate).
pub(crate) fn word_count(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// The mock's prompt-token estimate for a chat request body (see the crate
/// docs): the sum over `messages` of the number of whitespace-separated words
/// of the message's text content plus 3 per message.
///
/// `content` may be a string, an array of parts (only parts with
/// `"type":"text"` — or without a type — count, through their `text`), or
/// absent/null (0 words).
///
/// ```
/// let body = serde_json::json!({
///     "model": "m",
///     "messages": [
///         {"role": "system", "content": "be brief"},
///         {"role": "user", "content": [{"type": "text", "text": "hello there world"}]}
///     ]
/// });
/// assert_eq!(lb_mock::estimate_prompt_tokens(&body), (2 + 3) + (3 + 3));
/// ```
pub fn estimate_prompt_tokens(body: &serde_json::Value) -> u64 {
    let Some(messages) = body.get("messages").and_then(|m| m.as_array()) else {
        return 0;
    };
    messages
        .iter()
        .map(|m| {
            let words = match m.get("content") {
                Some(serde_json::Value::String(s)) => word_count(s),
                Some(serde_json::Value::Array(parts)) => parts.iter().map(part_words).sum(),
                Some(obj @ serde_json::Value::Object(_)) => part_words(obj),
                _ => 0,
            };
            words + 3
        })
        .sum()
}

fn part_words(part: &serde_json::Value) -> u64 {
    match part {
        serde_json::Value::String(s) => word_count(s),
        serde_json::Value::Object(o) => {
            let is_text = o.get("type").is_none_or(|t| t.as_str() == Some("text"));
            match (is_text, o.get("text")) {
                (true, Some(serde_json::Value::String(s))) => word_count(s),
                _ => 0,
            }
        }
        _ => 0,
    }
}

/// The canonical text of one behaviour, precomputed when the behaviour is
/// set so that requests only slice it.
#[derive(Debug)]
pub(crate) struct CannedText {
    full: String,
    /// `ends[k]` = byte length of the first `k + 1` words joined by spaces.
    ends: Vec<usize>,
}

impl CannedText {
    pub(crate) fn new(n: u32) -> CannedText {
        let full = canonical_text(n);
        let mut ends = Vec::with_capacity(n as usize);
        let mut len = 0usize;
        for i in 0..n {
            if i > 0 {
                len += 1;
            }
            len += canonical_word(i).len();
            ends.push(len);
        }
        CannedText { full, ends }
    }

    /// The canonical text of the first `n` tokens (`n` is clamped to the
    /// precomputed length).
    #[cfg(test)]
    pub(crate) fn prefix(&self, n: u32) -> &str {
        self.slice(0, n, false)
    }

    /// Number of tokens in the answer.
    pub(crate) fn len(&self) -> u32 {
        u32::try_from(self.ends.len()).unwrap_or(u32::MAX)
    }

    /// Tokens `first..first + n` of the canonical text joined by single
    /// spaces, preceded by the separating space when `lead_space` (and
    /// `first > 0` and `n > 0`). Clamped to the precomputed length.
    pub(crate) fn slice(&self, first: u32, n: u32, lead_space: bool) -> &str {
        let total = self.ends.len();
        let first = (first as usize).min(total);
        let last = first.saturating_add(n as usize).min(total);
        if last == first {
            return "";
        }
        let start = match first {
            0 => 0,
            f => self.ends[f - 1] + usize::from(!lead_space),
        };
        self.full.get(start..self.ends[last - 1]).unwrap_or("")
    }

    /// Matches an assistant prefill against the canonical text: `Some((k,
    /// lead_space))` when the prefill, after trimming trailing whitespace,
    /// is exactly the first `k` tokens (`k = 0` for an empty or blank
    /// prefill); `lead_space` is true when `k > 0` and the prefill had no
    /// trailing whitespace (so the continuation must start with the
    /// separating space). `None` when it is not such a prefix.
    pub(crate) fn match_prefill(&self, prefill: &str) -> Option<(u32, bool)> {
        let trimmed = prefill.trim_end();
        if trimmed.is_empty() {
            return Some((0, false));
        }
        if !self.full.starts_with(trimmed) {
            return None;
        }
        let k = self.ends.binary_search(&trimmed.len()).ok()? + 1;
        let k = u32::try_from(k).ok()?;
        Some((k, trimmed.len() == prefill.len()))
    }
}

/// SplitMix64 finaliser: a fast, well-mixing 64-bit hash step.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw in `[0, 1)` from a 64-bit hash.
pub(crate) fn unit_f64(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// FNV-1a over bytes, used to derive embedding vectors from input text.
pub(crate) fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_prefixes_match_canonical_text() {
        let c = CannedText::new(40);
        for n in 0..=40 {
            assert_eq!(c.prefix(n), canonical_text(n));
        }
        assert_eq!(c.prefix(100), canonical_text(40));
    }

    #[test]
    fn prefills_match_at_token_boundaries() {
        let c = CannedText::new(5);
        assert_eq!(c.len(), 5);
        assert_eq!(c.match_prefill(""), Some((0, false)));
        assert_eq!(c.match_prefill(" \n"), Some((0, false)));
        assert_eq!(c.match_prefill("alpha"), Some((1, true)));
        assert_eq!(c.match_prefill("alpha bravo"), Some((2, true)));
        assert_eq!(c.match_prefill("alpha bravo "), Some((2, false)));
        assert_eq!(c.match_prefill("alpha bravo\n\n"), Some((2, false)));
        assert_eq!(c.match_prefill(&canonical_text(5)), Some((5, true)));
        assert_eq!(c.match_prefill("alpha bra"), None);
        assert_eq!(c.match_prefill("alpha  bravo"), None);
        assert_eq!(c.match_prefill(" alpha"), None);
        assert_eq!(c.match_prefill("bravo"), None);
        assert_eq!(c.match_prefill(&canonical_text(6)), None);
        // prefill + continuation == canonical text, with or without the
        // prefill's trailing space (k < 5: a complete prefill with a
        // trailing space is longer than the answer).
        for k in 0..5 {
            for prefill in [canonical_text(k), canonical_text(k) + " "] {
                let (got_k, lead) = c.match_prefill(&prefill).unwrap();
                assert_eq!(got_k, k);
                let whole = format!("{prefill}{}", c.slice(k, 5 - k, lead));
                if k > 0 || prefill.is_empty() {
                    assert_eq!(whole, canonical_text(5), "{prefill:?}");
                }
            }
        }
        assert_eq!(c.slice(2, 2, true), " charlie delta");
        assert_eq!(c.slice(2, 2, false), "charlie delta");
        assert_eq!(c.slice(5, 3, true), "");
    }

    #[test]
    fn unit_is_in_range() {
        for i in 0..1000 {
            let u = unit_f64(splitmix64(i));
            assert!((0.0..1.0).contains(&u));
        }
        assert!(unit_f64(u64::MAX) < 1.0);
    }
}
