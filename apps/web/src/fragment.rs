//! The identity an application hands the app in the page's fragment, and how it gives way to
//! the operator's token URL.
//!
//! A fragment is whatever the link's author wrote: a crafted link can carry the author's own
//! token, or a token URL that mints the author's tokens, and sign the visitor's page in as the
//! author. The operator's `<meta name="skat-token-url">` is part of the page itself, so when it
//! is there it alone says where tokens come from ([`identity`]).

/// What the page's fragment (`#name=alice&token=...&token_url=...`) hands the app: an
/// application passes a signed identity that way, as fragments never reach server logs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    /// The `name` to chat as, if given.
    pub name: Option<String>,
    /// The signed-mode token (a JWT) for `name`, if given.
    pub token: Option<String>,
    /// Where to fetch fresh tokens (`token_url`, URL-encoded in the fragment), if given. It
    /// stays in the address bar: a reload fetches a token from it.
    pub token_url: Option<String>,
    /// The fragment without the token (`#` included, or empty): what the address bar should
    /// show, so that a copied link does not carry the token.
    pub scrubbed: String,
}

/// Splits a `location.hash` into [`Fragment`].
pub fn parse_fragment(hash: &str) -> Fragment {
    let mut fragment = Fragment::default();
    let mut kept = Vec::new();
    for pair in hash
        .trim_start_matches('#')
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("token", v)) => fragment.token = Some(v.to_owned()),
            Some(("token_url", v)) => {
                fragment.token_url = percent_decode(v).filter(|url| !url.is_empty());
                kept.push(pair);
            }
            Some(("name", v)) => {
                fragment.name = Some(v.to_owned());
                kept.push(pair);
            }
            _ => kept.push(pair),
        }
    }
    if !kept.is_empty() {
        fragment.scrubbed = format!("#{}", kept.join("&"));
    }
    fragment
}

/// Who the page signs in as: a name, a token and where fresh tokens come from.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The name to chat as, if given (in signed mode the token's `sub` decides: see
    /// [`token_subject`](crate::session::token_subject)).
    pub name: Option<String>,
    /// The token the first `hello` carries.
    pub token: Option<String>,
    /// Where fresh tokens come from.
    pub token_url: Option<String>,
}

/// The page's identity from its `fragment` and the operator's `meta_token_url`
/// (`<meta name="skat-token-url">`), and why part of the fragment was ignored, if it was.
///
/// With a meta token URL, the fragment's `token` and `token_url` are ignored: tokens come only
/// from the operator's URL, with the visitor's own cookies, so a link cannot sign the page in as
/// its author. The fragment's `name` stays a hint: the fetched token's `sub` is the name the page
/// claims. Without one, the fragment is the application's way in (as before).
pub fn identity(fragment: Fragment, meta_token_url: Option<String>) -> (Identity, Option<String>) {
    let Some(meta) = meta_token_url else {
        let identity = Identity {
            name: fragment.name,
            token: fragment.token,
            token_url: fragment.token_url,
        };
        return (identity, None);
    };
    let ignored: Vec<&str> = [
        fragment.token.as_ref().map(|_| "token"),
        fragment.token_url.as_ref().map(|_| "token_url"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let why = (!ignored.is_empty()).then(|| {
        format!(
            "skat: ignoring the link's {}: this page gets its tokens from its \
             <meta name=\"skat-token-url\"> ({meta}), so a link cannot sign it in as someone else",
            ignored.join(" and ")
        )
    });
    let identity = Identity {
        name: fragment.name,
        token: None,
        token_url: Some(meta),
    };
    (identity, why)
}

/// Decodes `%XX` escapes (as `encodeURIComponent` makes them); `None` if one is malformed or
/// the result is not UTF-8. `+` stays a plus.
pub fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fragment_gives_name_and_token_and_loses_the_token() {
        let f = parse_fragment("#name=alice&token=a.b.c&theme=dark");
        assert_eq!(f.name.as_deref(), Some("alice"));
        assert_eq!(f.token.as_deref(), Some("a.b.c"));
        assert_eq!(f.scrubbed, "#name=alice&theme=dark");
        assert_eq!(parse_fragment("#token=a.b.c").scrubbed, "");
        assert_eq!(parse_fragment(""), Fragment::default());
    }

    #[test]
    fn the_meta_token_url_overrides_the_fragments_token_and_token_url() {
        let crafted = "#name=mallory&token=m.a.llory&token_url=https%3A%2F%2Fevil.example%2Ft";
        let meta = Some("https://app.example/chat-token".to_owned());
        let (identity, why) = super::identity(parse_fragment(crafted), meta.clone());
        assert_eq!(
            identity,
            Identity {
                name: Some("mallory".into()),
                token: None,
                token_url: meta.clone(),
            }
        );
        let why = why.unwrap();
        assert!(why.contains("token and token_url"), "{why}");
        assert!(why.contains("https://app.example/chat-token"), "{why}");
        // Nothing ignored, nothing said.
        let (identity, why) = super::identity(parse_fragment("#name=grace"), meta.clone());
        assert_eq!((identity.token_url, why), (meta, None));
        // Without the meta token URL, the fragment is the application's way in.
        let (identity, why) = super::identity(parse_fragment(crafted), None);
        assert_eq!(identity.token.as_deref(), Some("m.a.llory"));
        assert_eq!(
            identity.token_url.as_deref(),
            Some("https://evil.example/t")
        );
        assert_eq!(why, None);
    }

    #[test]
    fn the_token_url_is_decoded_and_stays() {
        let f = parse_fragment(
            "#name=alice&token=a.b.c&token_url=https%3A%2F%2Fapp.example%2Fchat-token%3Fx%3D1",
        );
        assert_eq!(
            f.token_url.as_deref(),
            Some("https://app.example/chat-token?x=1")
        );
        assert_eq!(
            f.scrubbed,
            "#name=alice&token_url=https%3A%2F%2Fapp.example%2Fchat-token%3Fx%3D1"
        );
        assert_eq!(
            parse_fragment("#token_url=/t").token_url.as_deref(),
            Some("/t")
        );
        assert_eq!(parse_fragment("#token_url=%zz").token_url, None);
        assert_eq!(parse_fragment("#token_url=").token_url, None);
        assert_eq!(percent_decode("a+b%20c%C3%A9").as_deref(), Some("a+b cé"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }
}
