//! The token string: `<prefix>_<id>_<secret><checksum>`, its parts, and how it is minted and parsed.
//! (Its longer documentation is on the public item, where rustdoc shows it.)

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Length of a token id in base62 characters (about 95 bits).
pub(crate) const ID_LEN: usize = 16;
/// Length of the secret in base62 characters (about 131 bits).
pub(crate) const SECRET_LEN: usize = 22;
/// Length of the CRC32 checksum in base62 characters.
pub(crate) const CHECKSUM_LEN: usize = 6;
/// Longest prefix accepted by [`TokenFormat::with_prefix`].
pub(crate) const MAX_PREFIX_LEN: usize = 16;

/// The public identifier of a token: 16 base62 characters, safe to log and show.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId([u8; ID_LEN]);

impl TokenId {
    /// A new random id from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut id = [0u8; ID_LEN];
        fill_base62(&mut id);
        Self(id)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        // Only base62 bytes are ever stored, which are ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// A small hash of the id, used to spread ids over stripes (ids are random already).
    pub(crate) fn stripe(&self, n: usize) -> usize {
        ((self.hot_hash() >> 40) as usize) % n
    }

    /// A 64-bit hash of the whole id (hot table set index and tag; stripes).
    pub(crate) fn hot_hash(&self) -> u64 {
        let word = |from: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&self.0[from..from + 8]);
            u64::from_le_bytes(w)
        };
        let h = (word(0).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ word(8))
            .wrapping_mul(0xD6E8_FEB8_6659_FD93);
        h ^ (h >> 29)
    }
}

impl FromStr for TokenId {
    type Err = TokenFormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != ID_LEN {
            return Err(TokenFormatError::Length);
        }
        if !b.iter().all(u8::is_ascii_alphanumeric) {
            return Err(TokenFormatError::Alphabet);
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(b);
        Ok(Self(id))
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({})", self.as_str())
    }
}

impl serde::Serialize for TokenId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for TokenId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A secret string (a whole token, or a password) whose `Debug` and `Display` redact it.
///
/// The value is reachable only through [`Secret::expose`], so it never lands in a log by
/// accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Show it to the user once; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// The redacted form of a token: prefix and id (public), the secret as `****`.
pub(crate) fn redact(token: &str) -> String {
    match token.rsplit_once('_') {
        Some((head, _)) if head.contains('_') && head.is_ascii() => format!("{head}_****"),
        _ => "****".to_owned(),
    }
}

/// SHA-256 of a token's secret part: all that a store ever keeps. Opaque: a store keeps
/// it as [`to_hex`](Self::to_hex) and reads it back with [`from_hex`](Self::from_hex);
/// `Debug` prints no digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Hashes a secret.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Constant-time comparison.
    pub(crate) fn ct_eq(&self, other: &SecretHash) -> bool {
        // Four word comparisons instead of 32 byte ones; constant time all the same.
        let word = |h: &[u8; 32], i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&h[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(w)
        };
        let eq = (0..4).fold(subtle::Choice::from(1), |acc, i| {
            acc & word(&self.0, i).ct_eq(&word(&other.0, i))
        });
        eq.into()
    }

    /// Lower-case hex, as stores keep it.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses lower- or upper-case hex of 64 digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        unhex(s).map(Self)
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Parses lower- or upper-case hex of exactly `2 × N` digits.
pub(crate) fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(****)")
    }
}

/// Why a string is not a well-formed token. Found without any store access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFormatError {
    /// The token does not start with the configured `<prefix>_`.
    #[error("token does not start with the expected prefix")]
    Prefix,
    /// The token, or its id, has the wrong length.
    #[error("token has the wrong length")]
    Length,
    /// The token holds a character outside its alphabet.
    #[error("token holds a character outside its alphabet")]
    Alphabet,
    /// The CRC32 checksum does not match: a mistyped or truncated token.
    #[error("token checksum does not match")]
    Checksum,
    /// The configured prefix is not 1 to 16 lower-case ASCII letters or digits.
    #[error("token prefix must be 1 to 16 lower-case ASCII letters or digits")]
    BadPrefix,
}

/// A freshly minted token: its id, the hash to store, and the full token to show once.
pub struct MintedToken {
    /// The public id.
    pub id: TokenId,
    /// SHA-256 of the secret part; store this.
    pub secret_hash: SecretHash,
    /// The full token string. Show it once, at creation.
    pub token: Secret,
}

impl fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedToken")
            .field("id", &self.id)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// A token string split into its parts. The secret borrows from the input.
pub struct ParsedToken<'a> {
    /// The public id.
    pub id: TokenId,
    secret: &'a str,
}

impl ParsedToken<'_> {
    /// SHA-256 of the secret part, to compare with the stored hash.
    pub fn secret_hash(&self) -> SecretHash {
        SecretHash::of(self.secret)
    }
}

impl fmt::Debug for ParsedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedToken")
            .field("id", &self.id)
            .field("secret", &"****")
            .finish()
    }
}

/// How tokens look: the prefix. Mints and parses tokens.
///
/// The format follows GitHub's: a fixed, configurable prefix so secret scanners can find
/// leaked tokens, a public id that is safe to log, a secret of at least 128 bits from the
/// OS CSPRNG, and a CRC32 checksum so a mistyped or truncated token is rejected without
/// any store access.
///
/// ```
/// use tower_pat::TokenFormat;
///
/// let format = TokenFormat::default();
/// let minted = format.mint();
/// let parsed = format.parse(minted.token.expose()).unwrap();
/// assert_eq!(parsed.id, minted.id);
/// assert!(format.parse("pat_not_a_token").is_err());
/// // Debug never shows the secret.
/// assert!(!format!("{minted:?}").contains(&minted.token.expose()[25..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFormat {
    prefix: String,
}

impl Default for TokenFormat {
    /// The prefix `pat`.
    fn default() -> Self {
        Self {
            prefix: "pat".to_owned(),
        }
    }
}

impl TokenFormat {
    /// A format with the given prefix (1 to 16 lower-case ASCII letters or digits, e.g.
    /// `acme` gives `acme_…` tokens).
    pub fn with_prefix(prefix: &str) -> Result<Self, TokenFormatError> {
        let ok = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok {
            return Err(TokenFormatError::BadPrefix);
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A regular expression (Rust `regex`, PCRE, RE2 and Go syntax alike) that matches
    /// tokens of this format in text, for secret scanners: the prefix, `_`, the 16-character
    /// id, `_`, then 28 characters of secret and checksum, between word boundaries. A
    /// match is a candidate; [`parse`](Self::parse) (or `pat token check --offline`) also
    /// checks its checksum.
    ///
    /// ```
    /// use tower_pat::TokenFormat;
    ///
    /// assert_eq!(
    ///     TokenFormat::default().scanner_pattern(),
    ///     r"\bpat_[0-9A-Za-z]{16}_[0-9A-Za-z]{28}\b"
    /// );
    /// ```
    pub fn scanner_pattern(&self) -> String {
        format!(
            r"\b{}_[0-9A-Za-z]{{{ID_LEN}}}_[0-9A-Za-z]{{{}}}\b",
            self.prefix,
            SECRET_LEN + CHECKSUM_LEN
        )
    }

    /// Total length of a token in this format.
    pub fn token_len(&self) -> usize {
        self.prefix.len() + 1 + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN
    }

    /// The bytes where a token of this format keeps its id, unchecked: only a hint for
    /// where to look in a cache (a miss or a wrong id there is harmless), available before
    /// [`parse`](Self::parse) has checked anything.
    pub(crate) fn peek_id(&self, token: &str) -> Option<TokenId> {
        let start = self.prefix.len() + 1;
        let id = token.as_bytes().get(start..start + ID_LEN)?;
        (token.len() == self.token_len()).then(|| {
            let mut raw = [0u8; ID_LEN];
            raw.copy_from_slice(id);
            TokenId(raw)
        })
    }

    /// Mints a new token with a new random id.
    pub fn mint(&self) -> MintedToken {
        self.mint_with_id(TokenId::generate())
    }

    /// Mints a new secret for an existing id (rotation in place).
    pub fn mint_with_id(&self, id: TokenId) -> MintedToken {
        let mut secret = [0u8; SECRET_LEN];
        fill_base62(&mut secret);
        let mut s = String::with_capacity(self.token_len());
        s.push_str(&self.prefix);
        s.push('_');
        s.push_str(id.as_str());
        s.push('_');
        s.extend(secret.iter().map(|&b| b as char));
        let crc = crc32fast::hash(s.as_bytes());
        s.extend(checksum_chars(crc).iter().map(|&b| b as char));
        let secret_hash = SecretHash::of(std::str::from_utf8(&secret).unwrap_or_default());
        MintedToken {
            id,
            secret_hash,
            token: Secret(s),
        }
    }

    /// Splits a token into id and secret, checking prefix, length, alphabet and checksum.
    pub fn parse<'a>(&self, token: &'a str) -> Result<ParsedToken<'a>, TokenFormatError> {
        let b = token.as_bytes();
        let p = self.prefix.len();
        if b.len() < p + 1 || &b[..p] != self.prefix.as_bytes() || b[p] != b'_' {
            return Err(TokenFormatError::Prefix);
        }
        if b.len() != self.token_len() {
            return Err(TokenFormatError::Length);
        }
        let id_end = p + 1 + ID_LEN;
        if b[id_end] != b'_' {
            return Err(TokenFormatError::Alphabet);
        }
        let body = &b[p + 1..];
        let all_alnum = |part: &[u8]| part.iter().fold(true, |ok, &c| ok & is_alnum(c));
        let alnum = all_alnum(&body[..ID_LEN]) & all_alnum(&body[ID_LEN + 1..]);
        if !alnum {
            return Err(TokenFormatError::Alphabet);
        }
        let crc_start = b.len() - CHECKSUM_LEN;
        let expected = checksum_chars(crc32fast::hash(&b[..crc_start]));
        if expected[..] != b[crc_start..] {
            return Err(TokenFormatError::Checksum);
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&b[p + 1..id_end]);
        Ok(ParsedToken {
            id: TokenId(id),
            // All bytes checked are ASCII, so these are char boundaries.
            secret: &token[id_end + 1..crc_start],
        })
    }
}

/// `u8::is_ascii_alphanumeric` without branches, so that loops over it vectorize.
#[inline(always)]
pub(crate) fn is_alnum(b: u8) -> bool {
    ((b | 0x20).wrapping_sub(b'a') < 26) | (b.wrapping_sub(b'0') < 10)
}

fn checksum_chars(mut crc: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    out
}

/// Fills `out` with uniformly random base62 characters from the OS CSPRNG.
fn fill_base62(out: &mut [u8]) {
    let mut filled = 0;
    let mut buf = [0u8; 64];
    while filled < out.len() {
        // A failing OS RNG leaves no safe way to mint a secret.
        getrandom::getrandom(&mut buf).expect("the OS random number generator failed");
        for &byte in &buf {
            // 248 = 4 * 62: rejection sampling keeps the distribution uniform.
            if byte < 248 && filled < out.len() {
                out[filled] = BASE62[(byte % 62) as usize];
                filled += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_parse_round_trip() {
        let f = TokenFormat::default();
        for _ in 0..100 {
            let m = f.mint();
            let t = m.token.expose();
            assert_eq!(t.len(), f.token_len());
            assert!(t.starts_with("pat_"));
            let p = f.parse(t).unwrap();
            assert_eq!(p.id, m.id);
            assert!(p.secret_hash().ct_eq(&m.secret_hash));
        }
    }

    #[test]
    fn ids_and_secrets_differ() {
        let f = TokenFormat::default();
        let a = f.mint();
        let b = f.mint();
        assert_ne!(a.id, b.id);
        assert_ne!(a.token, b.token);
    }

    #[test]
    fn rejects_bad_tokens() {
        let f = TokenFormat::default();
        let t = f.mint().token.expose().to_owned();
        assert_eq!(
            f.parse(&t.replacen("pat", "pot", 1)).unwrap_err(),
            TokenFormatError::Prefix
        );
        assert_eq!(
            f.parse(&t[..t.len() - 1]).unwrap_err(),
            TokenFormatError::Length
        );
        assert_eq!(
            f.parse(&format!("{t}x")).unwrap_err(),
            TokenFormatError::Length
        );
        assert_eq!(f.parse("").unwrap_err(), TokenFormatError::Prefix);
        // Change one secret character: checksum fails.
        let mut bad = t.clone().into_bytes();
        let i = 4 + ID_LEN + 1 + 3;
        bad[i] = if bad[i] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            f.parse(std::str::from_utf8(&bad).unwrap()).unwrap_err(),
            TokenFormatError::Checksum
        );
        let mut bad = t.clone().into_bytes();
        bad[i] = b'-';
        assert_eq!(
            f.parse(std::str::from_utf8(&bad).unwrap()).unwrap_err(),
            TokenFormatError::Alphabet
        );
        // Multi-byte UTF-8 at a position never panics.
        let s = format!("pat_{}", "é".repeat(23));
        assert!(f.parse(&s).is_err());
    }

    #[test]
    fn custom_prefix() {
        let f = TokenFormat::with_prefix("acme").unwrap();
        let m = f.mint();
        assert!(m.token.expose().starts_with("acme_"));
        assert!(f.parse(m.token.expose()).is_ok());
        assert!(TokenFormat::default().parse(m.token.expose()).is_err());
        assert!(TokenFormat::with_prefix("Bad").is_err());
        assert!(TokenFormat::with_prefix("").is_err());
        assert!(TokenFormat::with_prefix("a_b").is_err());
    }

    #[test]
    fn redaction() {
        let m = TokenFormat::default().mint();
        let t = m.token.expose();
        let secret = &t[4 + ID_LEN + 1..];
        for shown in [
            format!("{m:?}"),
            format!("{}", m.token),
            format!("{:?}", m.token),
        ] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.contains("****"));
        }
        assert_eq!(redact("garbage"), "****");
    }

    #[test]
    fn ct_eq_sees_every_byte() {
        let h = SecretHash::of("abc");
        assert!(h.ct_eq(&h));
        for i in 0..32 {
            let mut other = h;
            other.0[i] ^= 1;
            assert!(!h.ct_eq(&other), "byte {i}");
        }
    }

    #[test]
    fn hash_hex_round_trip() {
        let h = SecretHash::of("abc");
        assert_eq!(SecretHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(SecretHash::from_hex("zz"), None);
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn token_id_parse() {
        let id = TokenId::generate();
        assert_eq!(id.as_str().parse::<TokenId>().unwrap(), id);
        assert!("short".parse::<TokenId>().is_err());
        assert!("abcdefghijklmno!".parse::<TokenId>().is_err());
    }
}

#[cfg(test)]
mod alnum_tests {
    #[test]
    fn is_alnum_agrees_with_std_for_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(super::is_alnum(b), b.is_ascii_alphanumeric(), "byte {b}");
        }
    }
}
