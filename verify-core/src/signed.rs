//! What a signature is checked against: the document, or its digest.
//!
//! RSA and ECDSA sign a digest of the document ([`crate::Algorithm::digest`]),
//! so a check needs only that digest; Ed25519 hashes inside the scheme and
//! needs the document itself. Invariant: a digest is checked only as the
//! digest of the algorithm it comes with; one of another length, or one
//! given for Ed25519, never verifies.

use crate::Algorithm;

/// The bytes a signature covers, in the form they are at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed<'a> {
    /// The signed document (every algorithm).
    Document(&'a [u8]),
    /// The document's digest under the algorithm's hash (RSA and ECDSA).
    Digest(&'a [u8]),
}

impl<'a> Signed<'a> {
    /// The digest `algorithm` signs: the given one, or the document's
    /// hashed now; `None` when there is none to check (Ed25519, or a
    /// digest of the wrong length).
    pub fn digest_for(self, algorithm: Algorithm) -> Option<std::borrow::Cow<'a, [u8]>> {
        let digest = algorithm.digest()?;
        match self {
            Signed::Document(document) => Some(digest.hash(document).into()),
            Signed::Digest(given) if given.len() == digest.output_len() => Some(given.into()),
            Signed::Digest(_) => None,
        }
    }

    /// Bytes at hand (what a check has to read).
    pub fn len(self) -> usize {
        match self {
            Signed::Document(bytes) | Signed::Digest(bytes) => bytes.len(),
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_counts_only_at_its_algorithms_length() {
        let document = b"signed bytes";
        let sha256 = crate::Digest::Sha256.hash(document);
        let rsa = Algorithm::Sha256WithRsa;
        assert_eq!(
            Signed::Document(document).digest_for(rsa).as_deref(),
            Some(&sha256[..])
        );
        assert_eq!(
            Signed::Digest(&sha256).digest_for(rsa).as_deref(),
            Some(&sha256[..])
        );
        assert_eq!(Signed::Digest(&sha256[..31]).digest_for(rsa), None);
        assert_eq!(
            Signed::Digest(&sha256).digest_for(Algorithm::Sha384WithRsa),
            None
        );
        assert_eq!(
            Signed::Document(document).digest_for(Algorithm::Ed25519),
            None
        );
    }
}
