//! The identity an application hands the app in the page's fragment.

/// What the page's fragment (`#name=alice&token=...`) hands the app: an application passes a
/// signed identity that way, as fragments never reach server logs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    /// The `name` to chat as, if given.
    pub name: Option<String>,
    /// The signed-mode token (a JWT) for `name`, if given.
    pub token: Option<String>,
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
}
