use crate::on_both;

#[tokio::test]
async fn set_if_absent_keeps_the_first_value() {
    on_both(|store| async move {
        let s = store.settings();
        assert_eq!(s.get("admin_key_hash").await.unwrap(), None);
        assert_eq!(
            s.set_if_absent("admin_key_hash", "first").await.unwrap(),
            "first"
        );
        assert_eq!(
            s.set_if_absent("admin_key_hash", "second").await.unwrap(),
            "first"
        );
        assert_eq!(
            s.get("admin_key_hash").await.unwrap().as_deref(),
            Some("first")
        );
        s.set("admin_key_hash", "third").await.unwrap();
        assert_eq!(
            s.get("admin_key_hash").await.unwrap().as_deref(),
            Some("third")
        );
        assert!(s.delete("admin_key_hash").await.unwrap());
        assert!(!s.delete("admin_key_hash").await.unwrap());

        // Racing replicas agree on one winner.
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .settings()
                        .set_if_absent("race", &format!("v{i}"))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap());
        }
        seen.dedup();
        assert_eq!(seen.len(), 1, "{seen:?}");
    })
    .await;
}
