//! MSK IAM authentication: the SASL/OAUTHBEARER token is a SigV4 pre-signed URL of the
//! `kafka-cluster:Connect` action, in URL-safe base64 without padding, valid for 15 minutes.
//!
//! librdkafka asks for a token on its own thread and waits for the answer
//! (`ClientContext::generate_oauth_token`), so signing is synchronous here: no runtime, no
//! network. The credentials are the function role's, which Lambda puts in the environment for
//! the execution environment's lifetime; they are read again at every refresh.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;

/// How long a token is valid (the most MSK accepts).
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// Identifies the signer to MSK (the `User-Agent` query parameter AWS's signers add).
const USER_AGENT: &str = concat!("msk-order-enricher/", env!("CARGO_PKG_VERSION"));

/// A signed token and when it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    /// The OAUTHBEARER token.
    pub value: String,
    /// Expiry, in milliseconds since the Unix epoch (what librdkafka wants).
    pub expires_at_ms: i64,
}

/// Why no token could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// No credentials in the environment.
    #[error("no AWS credentials for MSK IAM authentication (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set)")]
    NoCredentials,
    /// No region to sign for.
    #[error("no AWS region for MSK IAM authentication (AWS_REGION is not set)")]
    NoRegion,
    /// The signer refused the request.
    #[error("could not sign the MSK IAM token: {0}")]
    Signing(String),
}

/// The credentials and region from `lookup` (the environment in production).
pub(crate) fn credentials_from(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(Credentials, String), TokenError> {
    let get = |name: &str| lookup(name).filter(|value| !value.is_empty());
    let region = get("AWS_REGION")
        .or_else(|| get("AWS_DEFAULT_REGION"))
        .ok_or(TokenError::NoRegion)?;
    let (Some(key), Some(secret)) = (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) else {
        return Err(TokenError::NoCredentials);
    };
    let credentials = Credentials::new(key, secret, get("AWS_SESSION_TOKEN"), None, "environment");
    Ok((credentials, region))
}

/// Signs a token for MSK in `region` at `now`.
pub(crate) fn sign_token(
    credentials: &Credentials,
    region: &str,
    now: SystemTime,
) -> Result<Token, TokenError> {
    let signing = |e: &dyn std::fmt::Display| TokenError::Signing(e.to_string());
    let url = format!("https://kafka.{region}.amazonaws.com/?Action=kafka-cluster%3AConnect");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("kafka-cluster")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| signing(&e))?
        .into();
    let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| signing(&e))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| signing(&e))?
        .into_parts();
    let mut request = http::Request::get(&url).body(()).map_err(|e| signing(&e))?;
    instructions.apply_to_request_http1x(&mut request);
    let signed = format!(
        "{}&User-Agent={}",
        request.uri(),
        percent_encoding::utf8_percent_encode(USER_AGENT, percent_encoding::NON_ALPHANUMERIC)
    );
    let issued_ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    let lifetime_ms = i64::try_from(TOKEN_LIFETIME.as_millis()).unwrap_or(i64::MAX);
    Ok(Token {
        value: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed),
        expires_at_ms: issued_ms.saturating_add(lifetime_ms),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn keys(session_token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token.map(str::to_owned),
            None,
            "test",
        )
    }

    /// 2026-12-01T12:00:00Z
    fn noon() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_126_400)
    }

    fn decoded(token: &Token) -> String {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token.value)
            .expect("the token is URL-safe base64 without padding");
        String::from_utf8(bytes).unwrap()
    }

    fn query(url: &str) -> HashMap<String, String> {
        let (_, query) = url.split_once('?').unwrap();
        query
            .split('&')
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap();
                let value = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .unwrap();
                (name.to_owned(), value.into_owned())
            })
            .collect()
    }

    #[test]
    fn the_token_is_a_presigned_connect_url_for_the_region() {
        let token = sign_token(&keys(Some("SESSION")), "eu-west-1", noon()).unwrap();
        assert!(!token.value.contains(['+', '/', '=']), "URL-safe, unpadded");
        let url = decoded(&token);
        assert!(
            url.starts_with("https://kafka.eu-west-1.amazonaws.com/?"),
            "{url}"
        );
        let params = query(&url);
        assert_eq!(params["Action"], "kafka-cluster:Connect");
        assert_eq!(params["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(
            params["X-Amz-Credential"],
            "AKIDEXAMPLE/20261201/eu-west-1/kafka-cluster/aws4_request"
        );
        assert_eq!(params["X-Amz-Date"], "20261201T120000Z");
        assert_eq!(params["X-Amz-Expires"], "900");
        assert_eq!(params["X-Amz-SignedHeaders"], "host");
        assert_eq!(params["X-Amz-Security-Token"], "SESSION");
        assert_eq!(params["X-Amz-Signature"].len(), 64);
        assert!(params["User-Agent"].starts_with("msk-order-enricher/"));
    }

    #[test]
    fn the_token_expires_fifteen_minutes_after_signing() {
        let token = sign_token(&keys(None), "us-east-1", noon()).unwrap();
        assert_eq!(token.expires_at_ms, 1_796_126_400_000 + 900_000);
        assert!(!query(&decoded(&token)).contains_key("X-Amz-Security-Token"));
    }

    #[test]
    fn a_refresh_signs_a_new_token_with_a_later_expiry() {
        let first = sign_token(&keys(None), "us-east-1", noon()).unwrap();
        let later = noon() + Duration::from_secs(720);
        let second = sign_token(&keys(None), "us-east-1", later).unwrap();
        assert_ne!(first.value, second.value);
        assert_eq!(second.expires_at_ms - first.expires_at_ms, 720_000);
        assert_eq!(query(&decoded(&second))["X-Amz-Date"], "20261201T121200Z");
    }

    #[test]
    fn the_signature_is_deterministic_for_the_same_inputs() {
        let a = sign_token(&keys(None), "us-east-1", noon()).unwrap();
        let b = sign_token(&keys(None), "us-east-1", noon()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn missing_credentials_or_region_are_named() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            credentials_from(env(&[("AWS_ACCESS_KEY_ID", "A")])).unwrap_err(),
            TokenError::NoRegion
        );
        assert_eq!(
            credentials_from(env(&[
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "A")
            ]))
            .unwrap_err(),
            TokenError::NoCredentials
        );
        let (credentials, region) = credentials_from(env(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "A"),
            ("AWS_SECRET_ACCESS_KEY", "S"),
            ("AWS_SESSION_TOKEN", "T"),
        ]))
        .unwrap();
        assert_eq!(region, "us-east-1");
        assert_eq!(credentials.session_token(), Some("T"));
    }
}
