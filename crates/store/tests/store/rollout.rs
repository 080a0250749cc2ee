use store::rollout::{Change, Expect, Split};
use store::Error;

use crate::on_both;

fn change(action: &str, from: &str, to: &str) -> Change {
    Change {
        actor: "admin".into(),
        action: action.into(),
        from: Some(from.into()),
        to: Some(to.into()),
        reason: Some("test".into()),
    }
}

#[tokio::test]
async fn rollout_state_is_compare_and_set_with_history() {
    on_both(|store| async move {
        let r = store.rollouts();
        assert_eq!(r.get("summarizer").await.unwrap(), None);
        let split = Split {
            stable: "v1".into(),
            canary: Some("v2".into()),
            canary_percent: 10.0,
            ..Split::default()
        };
        let s1 = r
            .set(
                "summarizer",
                &split,
                Expect::Absent,
                &change("set", "v1 100%", "v2 10%"),
            )
            .await
            .unwrap();
        assert_eq!(s1.split, split);
        assert_eq!(r.get("summarizer").await.unwrap().as_ref(), Some(&s1));
        assert!(matches!(
            r.set("summarizer", &split, Expect::Absent, &change("set", "", ""))
                .await,
            Err(Error::Conflict(_))
        ));

        let promoted = Split {
            stable: "v2".into(),
            ..Split::default()
        };
        let s2 = r
            .set(
                "summarizer",
                &promoted,
                Expect::Rev(s1.rev),
                &change("promote", "v1", "v2"),
            )
            .await
            .unwrap();
        assert!(s2.rev > s1.rev);
        // A writer holding the old revision loses.
        assert!(matches!(
            r.set(
                "summarizer",
                &split,
                Expect::Rev(s1.rev),
                &change("rollback", "v2", "v1")
            )
            .await,
            Err(Error::Conflict(_))
        ));
        let bad = Split {
            canary_percent: 150.0,
            ..promoted.clone()
        };
        assert!(matches!(
            r.set("summarizer", &bad, Expect::Any, &change("set", "", ""))
                .await,
            Err(Error::Invalid(_))
        ));
        let other = r
            .set(
                "fraud",
                &Split {
                    stable: "3".into(),
                    ..Split::default()
                },
                Expect::Any,
                &change("set", "", "3"),
            )
            .await
            .unwrap();
        r.record("summarizer", &change("hold", "v2", "v2"))
            .await
            .unwrap();

        let history = r.history("summarizer", 10).await.unwrap();
        let actions: Vec<_> = history.iter().map(|e| e.change.action.as_str()).collect();
        assert_eq!(
            actions,
            vec!["hold", "promote", "set"],
            "newest first, failures unrecorded"
        );
        assert_eq!(history[1].change, change("promote", "v1", "v2"));
        assert!(history[0].id > history[1].id);
        assert_eq!(r.history("summarizer", 1).await.unwrap().len(), 1);
        assert!(r.history("nothing", 10).await.unwrap().is_empty());

        let all = r.list().await.unwrap();
        assert_eq!(
            all.iter().map(|s| s.model.as_str()).collect::<Vec<_>>(),
            vec!["fraud", "summarizer"]
        );
        let since = r.changed_since(s1.rev).await.unwrap();
        assert_eq!(
            since.iter().map(|s| s.rev).collect::<Vec<_>>(),
            vec![s2.rev, other.rev]
        );
        assert_eq!(r.version().await.unwrap(), other.rev);
    })
    .await;
}
