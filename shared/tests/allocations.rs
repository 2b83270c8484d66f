//! Heap allocations of verification + extraction for a 2 KB Stripe event, counted with a
//! counting global allocator (this test binary only): at most 3, so the ingest path never
//! builds a JSON tree or copies the body.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use doorbell::verify::{WebhookRequest, stripe, verify_at};
use doorbell::{Secret, Sources};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const NOW: i64 = 1_700_000_000;

#[test]
fn verify_and_extract_a_2k_stripe_event_in_at_most_3_allocations() {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bench/payloads/stripe-2k.json"
    ))
    .unwrap();
    assert_eq!(body.len(), 2048);
    let secret = "whsec_bench_only";
    let sources = Sources::from_json(
        &serde_json::json!({"sources": [{"name": "stripe", "provider": "stripe", "secrets": [secret]}]})
            .to_string(),
    )
    .unwrap();
    let source = sources.get("stripe").unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        stripe::SIGNATURE_HEADER,
        stripe::sign(&Secret::new(secret), NOW, &body)
            .parse()
            .unwrap(),
    );
    let req = WebhookRequest {
        headers: &headers,
        body: &body,
        query: "",
    };
    // Warm up once (lazy statics), then count one call.
    let v = verify_at(&req, source, NOW).unwrap();
    drop(v);
    let (a0, b0) = (
        ALLOCATIONS.load(Ordering::SeqCst),
        BYTES.load(Ordering::SeqCst),
    );
    let v = verify_at(&req, source, NOW).unwrap();
    let (allocations, bytes) = (
        ALLOCATIONS.load(Ordering::SeqCst) - a0,
        BYTES.load(Ordering::SeqCst) - b0,
    );
    assert!(!v.event_id.is_empty() && !v.event_type.is_empty());
    println!("verify_at, 2 KB Stripe event: {allocations} allocations, {bytes} bytes");
    assert!(
        allocations <= 3,
        "{allocations} allocations ({bytes} bytes); the budget is 3"
    );
    assert!(
        bytes < 512,
        "{bytes} bytes allocated: is the body being copied?"
    );
}
