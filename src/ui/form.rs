//! `application/x-www-form-urlencoded` bodies and query strings, with repeated keys.

/// A parsed form: its pairs in order.
#[derive(Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    /// Parses `a=1&b=2&a=3`; `+` is a space, `%XX` a byte, invalid UTF-8 is replaced.
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        Form(
            bytes
                .split(|b| *b == b'&')
                .filter(|p| !p.is_empty())
                .take(1000)
                .map(|pair| {
                    let (k, v) = match pair.iter().position(|b| *b == b'=') {
                        Some(i) => (&pair[..i], &pair[i + 1..]),
                        None => (pair, &[][..]),
                    };
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// The first value of `key`.
    pub(crate) fn one(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub(crate) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(s[i + 1]), hex(s[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::Form;

    #[test]
    fn pairs_repeats_and_escapes() {
        let f = Form::parse(b"scope=repo%3Aread&scope=a+b&name=x%ZZ&empty=&bare&end=%4");
        assert_eq!(f.all("scope").collect::<Vec<_>>(), ["repo:read", "a b"]);
        assert_eq!(f.one("name"), Some("x%ZZ"));
        assert_eq!(f.one("empty"), Some(""));
        assert_eq!(f.one("bare"), Some(""));
        assert_eq!(f.one("end"), Some("%4"));
        assert_eq!(f.one("missing"), None);
        assert_eq!(Form::parse(b"n=%E2%9C%93%FF").one("n"), Some("✓\u{fffd}"));
    }
}
