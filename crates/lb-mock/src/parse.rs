//! Zero-copy parsing of the few request fields the mock needs.
//!
//! Chat and embedding bodies are deserialised into small structs whose
//! custom visitors count words on the fly, so a request allocates nothing
//! for its messages (only an escaped `model` string is copied).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::text::{FNV_OFFSET, fnv1a, word_count};

/// A string borrowed from the body when it has no escapes.
#[derive(Debug)]
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The fields of a chat completion request the mock looks at.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest<'a> {
    #[serde(default, borrow)]
    pub(crate) model: Option<Str<'a>>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    #[serde(default)]
    pub(crate) stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub(crate) max_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) messages: PromptTokens,
}

/// `stream_options` of a chat request.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: Option<bool>,
}

/// Prompt-token estimate of `messages`: words of the text content + 3 per message.
#[derive(Debug, Default)]
pub(crate) struct PromptTokens(pub(crate) u64);

impl<'de> Deserialize<'de> for PromptTokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PromptTokens;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(PromptTokens(0))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(PromptTokens(0))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut total = 0u64;
                while let Some(m) = seq.next_element::<Message>()? {
                    total += m.content.0 + 3;
                }
                Ok(PromptTokens(total))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: ContentWords,
}

/// Words in a message `content`: a string, an array of parts, or null.
#[derive(Default)]
struct ContentWords(u64);

impl<'de> Deserialize<'de> for ContentWords {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ContentWords;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, an array of content parts or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ContentWords(word_count(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ContentWords(0))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ContentWords(0))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut total = 0u64;
                while let Some(p) = seq.next_element::<PartWords>()? {
                    total += p.0;
                }
                Ok(ContentWords(total))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Ok(ContentWords(PartVisitor.visit_map(map)?.0))
            }
        }
        d.deserialize_any(V)
    }
}

/// Words of one content part: `{"type":"text","text":...}` counts its text,
/// other part types count 0; a bare string part counts its words.
struct PartWords(u64);

struct PartVisitor;

impl<'de> Visitor<'de> for PartVisitor {
    type Value = PartWords;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a content part")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(PartWords(word_count(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut is_text = true;
        let mut words = 0u64;
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key.0 {
                "type" => {
                    let t: Option<Str<'de>> = map.next_value()?;
                    is_text = t.is_none_or(|t| t.0 == "text");
                }
                "text" => words = map.next_value::<ContentWords>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(PartWords(if is_text { words } else { 0 }))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(PartWords(0))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(PartWords(0))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(PartWords(0))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(PartWords(0))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(PartWords(0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(PartWords(0))
    }
}

impl<'de> Deserialize<'de> for PartWords {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PartVisitor)
    }
}

/// The fields of an embeddings request the mock looks at.
#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingRequest<'a> {
    #[serde(default, borrow)]
    pub(crate) model: Option<Str<'a>>,
    #[serde(default)]
    pub(crate) input: EmbeddingInput,
    #[serde(default)]
    pub(crate) dimensions: Option<usize>,
}

/// One hash per input (seeding its vector) and the total token estimate.
#[derive(Debug, Default)]
pub(crate) struct EmbeddingInput {
    pub(crate) hashes: Vec<u64>,
    pub(crate) tokens: u64,
}

/// One element of an `input` array.
enum InputItem {
    /// A string: its hash and word count.
    Text(u64, u64),
    /// An integer (the input is one token array).
    Int(i64),
    /// A token array: its hash and length.
    Tokens(u64, u64),
}

impl<'de> Deserialize<'de> for InputItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InputItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a token or an array of tokens")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(InputItem::Text(
                    fnv1a(v.as_bytes(), FNV_OFFSET),
                    word_count(v),
                ))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(InputItem::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(InputItem::Int(v as i64))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut h = FNV_OFFSET;
                let mut n = 0u64;
                while let Some(t) = seq.next_element::<i64>()? {
                    h = fnv1a(&t.to_le_bytes(), h);
                    n += 1;
                }
                Ok(InputItem::Tokens(h, n))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for EmbeddingInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EmbeddingInput;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings or tokens")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(EmbeddingInput {
                    hashes: vec![fnv1a(v.as_bytes(), FNV_OFFSET)],
                    tokens: word_count(v),
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(EmbeddingInput::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(EmbeddingInput::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = EmbeddingInput::default();
                // A flat array of integers is a single token-array input.
                let mut flat: Option<(u64, u64)> = None;
                while let Some(item) = seq.next_element::<InputItem>()? {
                    match item {
                        InputItem::Text(h, w) | InputItem::Tokens(h, w) => {
                            out.hashes.push(h);
                            out.tokens += w;
                        }
                        InputItem::Int(t) => {
                            let (h, n) = flat.get_or_insert((FNV_OFFSET, 0));
                            *h = fnv1a(&t.to_le_bytes(), *h);
                            *n += 1;
                        }
                    }
                }
                if let Some((h, n)) = flat {
                    out.hashes.push(h);
                    out.tokens += n;
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(v: serde_json::Value) -> u64 {
        let s = v.to_string();
        let r: ChatRequest<'_> = serde_json::from_str(&s).unwrap();
        let fast = r.messages.0;
        assert_eq!(fast, crate::estimate_prompt_tokens(&v), "{v}");
        fast
    }

    #[test]
    fn prompt_estimate() {
        assert_eq!(chat(json!({"model":"m"})), 0);
        assert_eq!(
            chat(json!({"messages":[{"role":"user","content":"hello  big\nworld"}]})),
            6
        );
        assert_eq!(
            chat(json!({"messages":[
                {"role":"user","content":[{"type":"text","text":"a b"},{"type":"image_url","image_url":{"url":"x y"}},{"text":"c","type":"text"}]},
                {"role":"assistant","content":null,"tool_calls":[]},
                {"role":"user","content":"esc\"aped \u{00e9}t\u{00e9}"}
            ]})),
            3 + 3 + 3 + 2 + 3
        );
    }

    #[test]
    fn borrowed_and_escaped_model() {
        let r: ChatRequest<'_> = serde_json::from_str(r#"{"model":"gpt-4o"}"#).unwrap();
        assert!(matches!(r.model.unwrap().0, Cow::Borrowed("gpt-4o")));
        let r: ChatRequest<'_> = serde_json::from_str(r#"{"model":"a\"b"}"#).unwrap();
        assert_eq!(r.model.unwrap().0, "a\"b");
    }

    #[test]
    fn embedding_inputs() {
        let r: EmbeddingRequest<'_> = serde_json::from_str(r#"{"input":"a b c"}"#).unwrap();
        assert_eq!((r.input.hashes.len(), r.input.tokens), (1, 3));
        let r: EmbeddingRequest<'_> =
            serde_json::from_str(r#"{"input":["a b","c","a b"]}"#).unwrap();
        assert_eq!((r.input.hashes.len(), r.input.tokens), (3, 5));
        assert_eq!(r.input.hashes[0], r.input.hashes[2]);
        let r: EmbeddingRequest<'_> = serde_json::from_str(r#"{"input":[1,2,3]}"#).unwrap();
        assert_eq!((r.input.hashes.len(), r.input.tokens), (1, 3));
        let r: EmbeddingRequest<'_> =
            serde_json::from_str(r#"{"input":[[1,2],[3]],"dimensions":4}"#).unwrap();
        assert_eq!((r.input.hashes.len(), r.input.tokens), (2, 3));
        assert_eq!(r.dimensions, Some(4));
    }
}
