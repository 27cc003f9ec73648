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
    pub(crate) fn prefix(&self, n: u32) -> &str {
        match (n as usize).min(self.ends.len()) {
            0 => "",
            k => self.full.get(..self.ends[k - 1]).unwrap_or(""),
        }
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
    fn unit_is_in_range() {
        for i in 0..1000 {
            let u = unit_f64(splitmix64(i));
            assert!((0.0..1.0).contains(&u));
        }
        assert!(unit_f64(u64::MAX) < 1.0);
    }
}
