//! Zero-copy parsing of the few request fields the mock needs.
//!
//! Chat and embedding bodies are deserialised into small structs whose
//! custom visitors count words on the fly, so a request allocates nothing
//! for its messages (only an escaped `model` string, and the text of a final
//! assistant message when it has escapes or several parts, are copied).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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
    #[serde(default, borrow)]
    pub(crate) messages: Messages<'a>,
}

/// `stream_options` of a chat request.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: Option<bool>,
}

/// What the mock takes from `messages`: the prompt-token estimate (words
/// of the text content + 3 per message) and the assistant prefill.
#[derive(Debug, Default)]
pub(crate) struct Messages<'a> {
    /// The prompt-token estimate.
    pub(crate) tokens: u64,
    /// When the last message has role `"assistant"`: its text content (a
    /// string, or its text parts concatenated; `""` when null or absent).
    pub(crate) prefill: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Messages<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Messages<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Messages::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Messages::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Messages::default();
                while let Some(m) = seq.next_element::<Message<'de>>()? {
                    out.tokens += m.words + 3;
                    out.prefill = m.assistant.then(|| m.text.unwrap_or(Cow::Borrowed("")));
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// One message: its word count, whether it is an assistant message, and
/// its text when it is one (the text is only copied when it has escapes or
/// several parts).
struct Message<'a> {
    words: u64,
    assistant: bool,
    text: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for Message<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Message<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // `None` until the role is seen: keep the text in case.
                let mut assistant: Option<bool> = None;
                let mut content = Content::default();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    match &*key.0 {
                        "role" => assistant = Some(map.next_value::<IsAssistant>()?.0),
                        "content" => {
                            content = map.next_value_seed(ContentSeed {
                                want_text: assistant != Some(false),
                            })?;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let assistant = assistant == Some(true);
                Ok(Message {
                    words: content.words,
                    assistant,
                    text: content.text.filter(|_| assistant),
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether a `role` is `"assistant"` (any other value, of any type, is not).
struct IsAssistant(bool);

impl<'de> Deserialize<'de> for IsAssistant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IsAssistant;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a role")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IsAssistant(v == "assistant"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(IsAssistant(false))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(IsAssistant(false))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(IsAssistant(false))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(IsAssistant(false))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(IsAssistant(false))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(IsAssistant(false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(IsAssistant(false))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(IsAssistant(false))
            }
        }
        d.deserialize_any(V)
    }
}

/// A message `content` (a string, an array of parts, or null): its words
/// and, when asked for, its text (parts concatenated without separator).
#[derive(Default)]
struct Content<'a> {
    words: u64,
    text: Option<Cow<'a, str>>,
}

impl<'a> Content<'a> {
    fn of_str(v: Cow<'a, str>, want_text: bool) -> Content<'a> {
        Content {
            words: word_count(&v),
            text: want_text.then_some(v),
        }
    }

    /// Appends a part.
    fn push(&mut self, part: Content<'a>) {
        self.words += part.words;
        match (&mut self.text, part.text) {
            (Some(t), Some(p)) => t.to_mut().push_str(&p),
            (t @ None, p) => *t = p,
            (Some(_), None) => {}
        }
    }
}

/// Deserialises a [`Content`], keeping its text only when `want_text`.
#[derive(Clone, Copy)]
struct ContentSeed {
    want_text: bool,
}

impl<'de> DeserializeSeed<'de> for ContentSeed {
    type Value = Content<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ContentSeed {
    type Value = Content<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an array of content parts or null")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Content::of_str(Cow::Borrowed(v), self.want_text))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Content {
            words: word_count(v),
            text: self.want_text.then(|| Cow::Owned(v.to_owned())),
        })
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Content::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Content::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut total = Content::default();
        while let Some(p) = seq.next_element_seed(PartSeed(self))? {
            total.push(p);
        }
        Ok(total)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        PartSeed(self).visit_map(map)
    }
}

/// One content part: `{"type":"text","text":...}` counts its text (as
/// does a part without a type), other part types count nothing; a bare
/// string part counts its words.
#[derive(Clone, Copy)]
struct PartSeed(ContentSeed);

impl<'de> DeserializeSeed<'de> for PartSeed {
    type Value = Content<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PartSeed {
    type Value = Content<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a content part")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.0.visit_borrowed_str(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.0.visit_str(v)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut is_text = true;
        let mut text = Content::default();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key.0 {
                "type" => {
                    let t: Option<Str<'de>> = map.next_value()?;
                    is_text = t.is_none_or(|t| t.0 == "text");
                }
                "text" => text = map.next_value_seed(self.0)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(if is_text { text } else { Content::default() })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Content::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Content::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Content::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Content::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Content::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Content::default())
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
        let fast = r.messages.tokens;
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

    fn prefill(v: serde_json::Value) -> Option<String> {
        let s = v.to_string();
        let r: ChatRequest<'_> = serde_json::from_str(&s).unwrap();
        assert_eq!(r.messages.tokens, crate::estimate_prompt_tokens(&v), "{v}");
        r.messages.prefill.map(Cow::into_owned)
    }

    #[test]
    fn assistant_prefill() {
        let user = json!({"role": "user", "content": "hi there"});
        assert_eq!(prefill(json!({"messages": [user]})), None);
        assert_eq!(prefill(json!({"messages": []})), None);
        assert_eq!(
            prefill(json!({"messages": [user, {"role": "assistant", "content": "alpha bravo "}]})),
            Some("alpha bravo ".into())
        );
        // An earlier assistant message is not a prefill.
        assert_eq!(
            prefill(json!({"messages": [{"role": "assistant", "content": "x"}, user]})),
            None
        );
        // Content before role, escapes, text parts concatenated, other parts ignored,
        // Mistral's `prefix` and vLLM's `continue_final_message` accepted.
        assert_eq!(
            prefill(json!({
                "continue_final_message": true,
                "add_generation_prompt": false,
                "messages": [user, {
                    "content": [
                        {"type": "text", "text": "al\"pha "},
                        {"type": "image_url", "image_url": {"url": "u"}},
                        {"text": "bravo", "type": "text"}
                    ],
                    "prefix": true,
                    "role": "assistant"
                }]
            })),
            Some("al\"pha bravo".into())
        );
        assert_eq!(
            prefill(
                json!({"messages": [user, {"role": "assistant", "content": null, "tool_calls": []}]})
            ),
            Some(String::new())
        );
        assert_eq!(
            prefill(json!({"messages": [{"content": "a b", "role": 7}]})),
            None
        );
        // The text of a borrowed single-string prefill is not copied.
        let s = r#"{"messages":[{"role":"assistant","content":"alpha"}]}"#;
        let r: ChatRequest<'_> = serde_json::from_str(s).unwrap();
        assert!(matches!(r.messages.prefill, Some(Cow::Borrowed("alpha"))));
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
