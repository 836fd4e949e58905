//! Validation rules for user-supplied values, shared by the server and by clients that want to
//! check input before sending it.

use crate::ErrorCode;

/// Longest user name, in characters.
pub const MAX_NAME_CHARS: usize = 32;
/// Longest room name, in characters.
pub const MAX_ROOM_CHARS: usize = 64;
/// Longest message body, in characters (Unicode scalar values).
pub const MAX_BODY_CHARS: usize = 4000;
/// Longest client nonce, in characters.
pub const MAX_NONCE_CHARS: usize = 64;
/// Largest page a `history` request may ask for.
pub const MAX_HISTORY_LIMIT: u32 = 100;
/// Page size of `history` without a `limit`, and of the page in `joined`.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;

/// Largest page a `search` request may ask for.
pub const MAX_SEARCH_LIMIT: u32 = 50;
/// Page size of `search` without a `limit`.
pub const DEFAULT_SEARCH_LIMIT: u32 = 20;
/// Longest `search` query, in bytes (UTF-8).
pub const MAX_QUERY_BYTES: usize = 256;

/// Most members in a `members` page, its size without a `limit`, and how many members `joined`
/// lists (the rest are paged with `members`): about 35 KB of names at most.
pub const MAX_MEMBERS_LIMIT: u32 = 1000;

/// Longest reaction emoji, in bytes (UTF-8): room for the longest common emoji sequences
/// (families, flags of regions, skin tones), not for a paragraph disguised as one cluster.
pub const MAX_EMOJI_BYTES: usize = 32;

/// Most distinct emoji one message may carry as reactions, so its reaction summary (in every
/// `message` frame and history page) stays bounded.
pub const MAX_REACTIONS: usize = 20;

/// Most users a reaction lists by name (`Reaction::users`, the earliest reactors); its `count`
/// stays exact. Bounds a message's frame in a huge room.
pub const REACTION_USERS_SHOWN: usize = 20;

/// Largest unread count the server reports (`joined.unread`, `read.unread`): it means "this many
/// or more", so counting stops there instead of walking a room's whole history.
pub const UNREAD_CAP: u32 = 1000;

/// A value that breaks a protocol rule: the error code to answer with and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The error code a server answers with.
    pub code: ErrorCode,
    /// A human-readable explanation, without trailing period.
    pub message: String,
}

impl Invalid {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Invalid {}

/// Checks a user name: 1–32 ASCII letters, digits, `_`, `-` or `.`.
pub fn validate_name(name: &str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            ErrorCode::InvalidName,
            "names are 1-32 characters of letters, digits, '_', '-' and '.'",
        ))
    }
}

/// Checks a room name: 1–64 characters of `a-z`, `0-9`, `_` and `-`.
pub fn validate_room(room: &str) -> Result<(), Invalid> {
    let ok = !room.is_empty()
        && room.len() <= MAX_ROOM_CHARS
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            ErrorCode::InvalidRoom,
            "room names are 1-64 characters of a-z, 0-9, '_' and '-'",
        ))
    }
}

/// Checks a message body: not blank and at most 4000 characters.
pub fn validate_body(body: &str) -> Result<(), Invalid> {
    // Counting chars is O(n); the byte length bounds it cheaply first.
    if body.len() > MAX_BODY_CHARS && body.chars().count() > MAX_BODY_CHARS {
        return Err(Invalid::new(
            ErrorCode::BodyTooLong,
            format!("message bodies are at most {MAX_BODY_CHARS} characters"),
        ));
    }
    if body.trim().is_empty() {
        return Err(Invalid::new(
            ErrorCode::InvalidBody,
            "message body is empty",
        ));
    }
    Ok(())
}

/// Checks a client nonce: at most 64 characters.
pub fn validate_nonce(nonce: &str) -> Result<(), Invalid> {
    if nonce.len() > MAX_NONCE_CHARS && nonce.chars().count() > MAX_NONCE_CHARS {
        return Err(Invalid::new(
            ErrorCode::InvalidNonce,
            format!("nonces are at most {MAX_NONCE_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Checks a reaction's emoji: exactly one extended grapheme cluster (what a user sees as one
/// character: `👍🏽` and `👨‍👩‍👧` are one), at most [`MAX_EMOJI_BYTES`] bytes, and no control or
/// whitespace character in it. It does not check that the cluster is an emoji (the Unicode
/// emoji list changes every year; clients would disagree): any single visible character
/// passes, which is harmless.
pub fn validate_emoji(emoji: &str) -> Result<(), Invalid> {
    use unicode_segmentation::UnicodeSegmentation as _;

    let mut clusters = emoji.graphemes(true);
    let one_cluster = clusters.next().is_some() && clusters.next().is_none();
    let ok = one_cluster
        && emoji.len() <= MAX_EMOJI_BYTES
        && !emoji.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            ErrorCode::InvalidEmoji,
            format!(
                "a reaction is one emoji: one character of at most {MAX_EMOJI_BYTES} bytes, not blank"
            ),
        ))
    }
}

/// Checks a `history` limit and applies the default.
pub fn validate_history_limit(limit: Option<u32>) -> Result<u32, Invalid> {
    match limit {
        None => Ok(DEFAULT_HISTORY_LIMIT),
        Some(n) if (1..=MAX_HISTORY_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(Invalid::new(
            ErrorCode::InvalidLimit,
            format!("history limit must be between 1 and {MAX_HISTORY_LIMIT}"),
        )),
    }
}

/// Checks a `search` limit and applies the default.
pub fn validate_search_limit(limit: Option<u32>) -> Result<u32, Invalid> {
    match limit {
        None => Ok(DEFAULT_SEARCH_LIMIT),
        Some(n) if (1..=MAX_SEARCH_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(Invalid::new(
            ErrorCode::InvalidLimit,
            format!("search limit must be between 1 and {MAX_SEARCH_LIMIT}"),
        )),
    }
}

/// The words of a `search` query: its whitespace-separated parts that hold a letter or a digit
/// (a lone `-` or `"` has nothing to find). A word is matched as written, never as an operator,
/// and a message must hold every word; a backend may match the last one as a word's start, so
/// results can follow a user still typing it. Refused as `invalid_query`: longer than
/// [`MAX_QUERY_BYTES`], a control character, or no word at all.
pub fn search_terms(q: &str) -> Result<Vec<&str>, Invalid> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(Invalid::new(
            ErrorCode::InvalidQuery,
            format!("a search is at most {MAX_QUERY_BYTES} bytes"),
        ));
    }
    if q.chars().any(char::is_control) {
        return Err(Invalid::new(
            ErrorCode::InvalidQuery,
            "a search holds no control characters",
        ));
    }
    let words: Vec<&str> = q
        .split_whitespace()
        .filter(|word| word.chars().any(char::is_alphanumeric))
        .collect();
    if words.is_empty() {
        return Err(Invalid::new(
            ErrorCode::InvalidQuery,
            "a search needs a word (letters or digits) to find",
        ));
    }
    Ok(words)
}

/// Checks a `members` limit and applies the default (the largest page).
pub fn validate_members_limit(limit: Option<u32>) -> Result<u32, Invalid> {
    match limit {
        None => Ok(MAX_MEMBERS_LIMIT),
        Some(n) if (1..=MAX_MEMBERS_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(Invalid::new(
            ErrorCode::InvalidLimit,
            format!("members limit must be between 1 and {MAX_MEMBERS_LIMIT}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["alice", "a", "Bob_2", "x.y-z", &"n".repeat(32)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "with space", "émile", "a/b", &"n".repeat(33), "<b>"] {
            assert_eq!(
                validate_name(bad).map_err(|e| e.code),
                Err(ErrorCode::InvalidName),
                "{bad}"
            );
        }
    }

    #[test]
    fn rooms() {
        for ok in ["general", "a", "room_1-b", &"r".repeat(64)] {
            assert_eq!(validate_room(ok), Ok(()), "{ok}");
        }
        for bad in ["", "General", "a.b", "a b", &"r".repeat(65)] {
            assert_eq!(
                validate_room(bad).map_err(|e| e.code),
                Err(ErrorCode::InvalidRoom),
                "{bad}"
            );
        }
    }

    #[test]
    fn bodies() {
        assert_eq!(validate_body("hi"), Ok(()));
        // 4000 multi-byte characters are fine although they are more than 4000 bytes.
        assert_eq!(validate_body(&"é".repeat(MAX_BODY_CHARS)), Ok(()));
        let code = |b: &str| validate_body(b).map_err(|e| e.code);
        assert_eq!(
            code(&"é".repeat(MAX_BODY_CHARS + 1)),
            Err(ErrorCode::BodyTooLong)
        );
        assert_eq!(code(""), Err(ErrorCode::InvalidBody));
        assert_eq!(code(" \n\t "), Err(ErrorCode::InvalidBody));
    }

    #[test]
    fn emoji() {
        let family = "👨\u{200d}👩\u{200d}👧";
        for ok in ["👍", "👍🏽", family, "a", "é", "🇫🇷"] {
            assert_eq!(validate_emoji(ok), Ok(()), "{ok}");
        }
        // One cluster of 33 bytes: a letter with 16 combining accents (2 bytes each).
        let long = format!("a{}", "\u{301}".repeat(16));
        assert_eq!(long.len(), MAX_EMOJI_BYTES + 1);
        let fits = format!("a{}", "\u{301}".repeat(15));
        assert_eq!(validate_emoji(&fits), Ok(()));
        for bad in [
            "", "ab", "👍👍", " ", "\n", "\u{7}", "\u{a0}", "\r\n", &long,
        ] {
            assert_eq!(
                validate_emoji(bad).map_err(|e| e.code),
                Err(ErrorCode::InvalidEmoji),
                "{bad:?}"
            );
        }
    }

    proptest::proptest! {
        /// Two clusters are never one emoji, whatever they are; and whatever passes is one
        /// cluster within the byte bound.
        #[test]
        fn emoji_are_single_bounded_clusters(s in "\\PC{0,4}") {
            use unicode_segmentation::UnicodeSegmentation as _;
            if validate_emoji(&s).is_ok() {
                proptest::prop_assert_eq!(s.graphemes(true).count(), 1);
                proptest::prop_assert!(s.len() <= MAX_EMOJI_BYTES);
            }
            let twice = format!("{s}{s}");
            if s.graphemes(true).count() >= 1 && twice.graphemes(true).count() >= 2 {
                proptest::prop_assert!(validate_emoji(&twice).is_err());
            }
        }
    }

    #[test]
    fn nonces_and_limits() {
        assert_eq!(validate_nonce(&"n".repeat(64)), Ok(()));
        assert!(validate_nonce(&"n".repeat(65)).is_err());
        assert_eq!(validate_history_limit(None), Ok(50));
        assert_eq!(validate_history_limit(Some(100)), Ok(100));
        assert!(validate_history_limit(Some(0)).is_err());
        assert!(validate_history_limit(Some(101)).is_err());
        assert_eq!(validate_search_limit(None), Ok(20));
        assert_eq!(validate_search_limit(Some(50)), Ok(50));
        assert!(validate_search_limit(Some(0)).is_err());
        assert!(validate_search_limit(Some(51)).is_err());
        assert_eq!(validate_members_limit(None), Ok(1000));
        assert_eq!(validate_members_limit(Some(1)), Ok(1));
        assert_eq!(validate_members_limit(Some(1000)), Ok(1000));
        for bad in [0, 1001] {
            assert_eq!(
                validate_members_limit(Some(bad)).map_err(|e| e.code),
                Err(ErrorCode::InvalidLimit)
            );
        }
    }

    #[test]
    fn search_terms_are_words_not_syntax() {
        assert_eq!(
            search_terms(r#"  deploy "v2" OR NOT x* "#),
            Ok(vec!["deploy", r#""v2""#, "OR", "NOT", "x*"])
        );
        assert_eq!(search_terms("café über"), Ok(vec!["café", "über"]));
        for bad in [
            "",
            "   ",
            r#"- " * ()"#,
            "a\u{0}b",
            "a\nb",
            &"x".repeat(257),
        ] {
            let refused = search_terms(bad).unwrap_err();
            assert_eq!(refused.code, ErrorCode::InvalidQuery, "{bad:?}");
        }
        assert!(search_terms(&"x".repeat(256)).is_ok());
        assert!(
            search_terms(&"é".repeat(129)).is_err(),
            "bytes, not characters"
        );
    }
}
