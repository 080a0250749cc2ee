//! SigV4 against the published `aws-sig-v4-test-suite` vectors (the suite's fixed credentials,
//! region `us-east-1`, service `service`, 2015-08-30T12:36:00Z), as reproduced by
//! `awslabs/aws-c-auth` and the AWS CRT tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use providers::bedrock::sigv4::{self, Credentials};

const KEY: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const DATE: &str = "20150830T123600Z";
const WHEN: u64 = 1_440_938_160;
const EMPTY_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

fn creds(token: Option<&'static str>) -> Credentials<'static> {
    Credentials {
        access_key_id: KEY,
        secret_access_key: SECRET,
        session_token: token,
    }
}

fn authz(method: &str, url: &str, headers: &[(&str, &str)], token: Option<&'static str>) -> String {
    sigv4::authorization(
        method,
        url,
        headers,
        EMPTY_HASH,
        "us-east-1",
        "service",
        &creds(token),
        DATE,
    )
    .unwrap()
}

#[test]
fn get_vanilla() {
    assert_eq!(
        authz(
            "GET",
            "https://example.amazonaws.com/",
            &[("X-Amz-Date", DATE)],
            None
        ),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=host;x-amz-date, \
         Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    );
}

#[test]
fn post_vanilla() {
    let a = authz(
        "POST",
        "https://example.amazonaws.com/",
        &[("x-amz-date", DATE)],
        None,
    );
    assert!(
        a.ends_with("Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        "{a}"
    );
}

#[test]
fn get_vanilla_query_order_key_case() {
    let a = authz(
        "GET",
        "https://example.amazonaws.com/?Param2=value2&Param1=value1",
        &[("x-amz-date", DATE)],
        None,
    );
    assert!(
        a.ends_with("Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        "{a}"
    );
}

#[test]
fn post_sts_header_before() {
    let a = authz(
        "POST",
        "https://example.amazonaws.com/",
        &[("x-amz-date", DATE), ("x-amz-security-token", TOKEN)],
        Some(TOKEN),
    );
    assert!(
        a.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,"),
        "{a}"
    );
    assert!(
        a.ends_with("Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"),
        "{a}"
    );
}

#[test]
fn sign_adds_date_hash_and_token_and_signs_them() {
    let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
    let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
    let headers = sigv4::sign(
        "POST",
        url,
        &[
            ("content-type", "application/json"),
            ("user-agent", "switchyard"),
        ],
        body,
        "us-east-1",
        "bedrock",
        &creds(Some("session")),
        WHEN,
    )
    .unwrap();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get("x-amz-date"), DATE);
    assert_eq!(get("x-amz-security-token"), "session");
    let hash = get("x-amz-content-sha256");
    assert_eq!(hash.len(), 64);
    let authorization = get("authorization");
    assert!(authorization.starts_with(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, \
         SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, \
         Signature="
    ));
    // The same signature from the lower-level function with the headers `sign` added.
    let expected = sigv4::authorization(
        "POST",
        url,
        &[
            ("content-type", "application/json"),
            ("x-amz-date", DATE),
            ("x-amz-content-sha256", &hash),
            ("x-amz-security-token", "session"),
        ],
        &hash,
        "us-east-1",
        "bedrock",
        &creds(Some("session")),
        DATE,
    )
    .unwrap();
    assert_eq!(authorization, expected);
    assert!(!format!("{:?}", creds(Some("session"))).contains(SECRET));
}

#[test]
fn bad_urls_are_errors() {
    assert!(sigv4::authorization(
        "GET",
        "/no/scheme",
        &[],
        EMPTY_HASH,
        "us-east-1",
        "service",
        &creds(None),
        DATE
    )
    .is_err());
}
