//! The `skat-server` binary's own checks, run as a process: configuration it must refuse.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};

fn skat_server(args: &[&str], secret: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skat-server"))
        .args(args)
        .env("SKAT_JWT_SECRET", secret)
        .env("SKAT_BIND", "127.0.0.1:0")
        .env_remove("SKAT_REDIS_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn empty_or_short_jwt_secrets_are_refused() {
    for secret in ["", "abc", "fifteen-bytes!!"] {
        for args in [&[][..], &["token", "admin"][..]] {
            let out = skat_server(args, secret);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{args:?} with a {}-byte secret: {stderr}",
                secret.len()
            );
            assert!(
                stderr.contains("at least 16"),
                "{args:?} with {secret:?}: {stderr}"
            );
            assert!(out.stdout.is_empty(), "no token printed");
        }
    }
}

#[test]
fn a_long_enough_secret_mints_a_token() {
    let out = skat_server(&["token", "admin"], "sixteen-bytes!!!");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).split('.').count(), 3);
}

#[test]
fn token_rooms_and_moderate_become_claims() {
    let out = skat_server(
        &[
            "token",
            "admin",
            "--rooms",
            "private-ops,support-*",
            "--moderate",
            "support-*",
        ],
        "sixteen-bytes!!!",
    );
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout);
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim())
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
    assert_eq!(
        claims["rooms"],
        serde_json::json!(["private-ops", "support-*"])
    );
    assert_eq!(claims["moderate"], serde_json::json!(["support-*"]));
}

/// `skat-server token admin` with `SKAT_REDIS_CLUSTER` set to `value`: the whole command line,
/// environment included, is parsed before the command runs.
fn with_redis_cluster(value: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skat-server"))
        .args(["token", "admin"])
        .env("SKAT_JWT_SECRET", "sixteen-bytes!!!")
        .env("SKAT_REDIS_CLUSTER", value)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn boolean_variables_take_1_yes_on_and_0_no_off() {
    for value in [
        "1", "yes", "on", "true", "TRUE", "0", "no", "off", "false", "",
    ] {
        let out = with_redis_cluster(value);
        assert!(
            out.status.success(),
            "SKAT_REDIS_CLUSTER={value}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = with_redis_cluster("maybe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "invalid value 'maybe' for '--redis-cluster': expected true, 1, yes or on, or false, 0, no or off"
        ),
        "{stderr}"
    );
}

#[test]
fn help_shows_boolean_options_as_flags_with_their_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_skat-server"))
        .arg("--help")
        .env_remove("SKAT_REDIS_CLUSTER")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let line = help
        .lines()
        .find(|l| l.trim_start().starts_with("--redis-cluster"))
        .unwrap_or_else(|| panic!("no --redis-cluster in {help}"));
    assert_eq!(line.trim(), "--redis-cluster", "a flag, no value: {line}");
    assert!(help.contains("[env: SKAT_REDIS_CLUSTER=]"), "{help}");
    assert!(help.contains("true, 1, yes or on"), "{help}");
}
