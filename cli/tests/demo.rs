//! The demo is part of the product's promise: it must end with every delivery as expected.

#[tokio::test]
async fn demo_ends_with_every_delivery_as_expected() {
    let mut out = Vec::new();
    let ok = doorbell_cli::demo::run(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(ok, "{text}");
    assert!(!text.contains("UNEXPECTED"), "{text}");
    assert!(text.contains("dead-letter queue: 1 message(s)"), "{text}");
    assert!(text.contains(r#""status":"paid""#), "{text}");
    for secret in [
        doorbell_cli::samples::DEV_STRIPE_SECRET,
        doorbell_cli::samples::DEV_GITHUB_SECRET,
    ] {
        assert!(!text.contains(secret), "the report must not print secrets");
    }
}
