use std::sync::Arc;
use genreg::*;

#[test]
fn grow_and_churn() {
    let r: Registry<u64> = Registry::builder().capacity(1).hash_seed(1).build();
    let mut regs = Vec::new();
    for i in 0..10_000u64 {
        regs.push(r.register(&format!("n{i}"), i).unwrap());
    }
    assert_eq!(r.len(), 10_000);
    for i in 0..10_000u64 {
        assert_eq!(*r.get(&format!("n{i}")).unwrap().value(), i);
    }
    assert_eq!(r.names().len(), 10_000);
    regs.truncate(5000);
    assert_eq!(r.len(), 5000);
    for i in 0..200_000u64 {
        let g = r.register(&format!("c{}", i % 7), i).unwrap();
        drop(g);
    }
    println!("cap {}", r.capacity());
    assert_eq!(r.len(), 5000);
    let w = Arc::new(5u32);
    let wr: Registry<Arc<u32>> = Registry::new();
    let g = wr.register_weak("w", &w).unwrap().detach();
    assert!(wr.get("w").is_some());
    drop(w);
    assert!(wr.get("w").is_none());
    let _ = g;
    assert_eq!(wr.len(), 0);
}

#[test]
fn threads() {
    let r: Registry<u64> = Registry::builder().capacity(1).build();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let r = &r;
            s.spawn(move || {
                for i in 0..50_000u64 {
                    let name = format!("k{}", (i * 7 + t) % 300);
                    match r.register(&name, i) {
                        Ok(g) => { if i % 3 == 0 { g.detach(); } }
                        Err(e) => { let _ = r.get(&name); if let Error::AlreadyRegistered{current,..} = e.error() { let _ = r.unregister_if_same(&name, *current); } }
                    }
                }
            });
        }
    });
    let n = r.names().len();
    assert_eq!(n, r.len());
}
