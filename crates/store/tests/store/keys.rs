use serde_json::json;
use store::keys::{self, Filter, Source};
use store::limits::{self, BudgetPeriod, Limits};
use store::{now_ms, teams, Error};

use crate::on_both;

pub fn hash() -> String {
    format!("{:032x}{:032x}", fastrand::u128(..), fastrand::u128(..))
}

pub fn new_key(name: &str) -> keys::New {
    keys::New {
        name: name.into(),
        hash: hash(),
        prefix: "sk-sy-AbCd".into(),
        ..keys::New::default()
    }
}

#[tokio::test]
async fn key_crud_revoke_and_lookup_by_hash() {
    on_both(|store| async move {
        let team = store
            .teams()
            .create(&teams::New {
                name: "search".into(),
                ..teams::New::default()
            })
            .await
            .unwrap();
        let v0 = store.keys().version().await.unwrap();
        let mut new = new_key("ci-bot");
        new.team_id = Some(team.id.clone());
        new.limits = Limits {
            models: Some(vec!["gpt-4o*".into()]),
            rpm: Some(60),
            tpm: Some(10_000),
            max_concurrency: Some(4),
            budget_usd: Some(12.5),
            budget_period: Some(BudgetPeriod::Month),
        };
        new.expires_at = Some(now_ms() + 60_000);
        new.metadata = json!({"owner": "ops"}).as_object().unwrap().clone();
        let key = store.keys().create(&new).await.unwrap();

        assert!(
            key.id.starts_with("key_") && key.id.len() == 24,
            "{}",
            key.id
        );
        assert_eq!(key.hash, new.hash);
        assert_eq!(key.prefix, "sk-sy-AbCd");
        assert_eq!(key.limits, new.limits);
        assert_eq!(key.metadata, new.metadata);
        assert_eq!(key.source, Source::Api);
        assert!(key.is_active(now_ms()));
        assert!(key.rev > v0);
        assert_eq!(store.keys().version().await.unwrap(), key.rev);
        assert_eq!(
            store.keys().get(&key.id).await.unwrap().as_ref(),
            Some(&key)
        );
        assert_eq!(
            store.keys().get_by_hash(&new.hash).await.unwrap().as_ref(),
            Some(&key)
        );
        assert_eq!(store.keys().get_by_hash(&hash()).await.unwrap(), None);
        assert_eq!(store.keys().get("key_nope").await.unwrap(), None);
        // The hash never leaves through serialization.
        let shown = serde_json::to_string(&key).unwrap();
        assert!(!shown.contains(&new.hash), "{shown}");
        assert!(shown.contains(r#""budget_period":"1mo""#), "{shown}");

        // Same hash twice: conflict. Unknown team: refused. Malformed hash: refused.
        let mut dup = new_key("dup");
        dup.hash = new.hash.clone();
        assert!(matches!(
            store.keys().create(&dup).await,
            Err(Error::Conflict(_))
        ));
        let mut orphan = new_key("orphan");
        orphan.team_id = Some("team_missing".into());
        assert!(matches!(
            store.keys().create(&orphan).await,
            Err(Error::MissingReference(_))
        ));
        let mut bad = new_key("bad");
        bad.hash = "sk-sy-not-a-hash".into();
        assert!(matches!(
            store.keys().create(&bad).await,
            Err(Error::Invalid(_))
        ));

        // PATCH: set one field, clear another, leave the rest.
        let patch: keys::Patch =
            serde_json::from_value(json!({"rpm": 120, "tpm": null, "name": "ci"})).unwrap();
        let changed = store.keys().update(&key.id, &patch).await.unwrap();
        assert_eq!(changed.name, "ci");
        assert_eq!(changed.limits.rpm, Some(120));
        assert_eq!(changed.limits.tpm, None);
        assert_eq!(changed.limits.budget_usd, Some(12.5));
        assert_eq!(changed.team_id, Some(team.id.clone()));
        assert_eq!(changed.metadata, key.metadata);
        assert!(changed.rev > key.rev);
        let clear_team = keys::Patch {
            team_id: Some(None),
            ..keys::Patch::default()
        };
        let changed = store.keys().update(&key.id, &clear_team).await.unwrap();
        assert_eq!(changed.team_id, None);
        assert!(matches!(
            store.keys().update("key_nope", &patch).await,
            Err(Error::NotFound)
        ));
        let to_missing_team = keys::Patch {
            team_id: Some(Some("team_missing".into())),
            ..keys::Patch::default()
        };
        assert!(matches!(
            store.keys().update(&key.id, &to_missing_team).await,
            Err(Error::MissingReference(_))
        ));

        // Revoke: idempotent, still found by hash, no longer active or listed.
        let other = store.keys().create(&new_key("other")).await.unwrap();
        let revoked = store.keys().revoke(&key.id).await.unwrap();
        let at = revoked.revoked_at.unwrap();
        assert!(!revoked.is_active(now_ms()));
        let again = store.keys().revoke(&key.id).await.unwrap();
        assert_eq!(again.revoked_at, Some(at));
        let by_hash = store.keys().get_by_hash(&new.hash).await.unwrap().unwrap();
        assert!(!by_hash.is_active(now_ms()));
        assert!(matches!(
            store.keys().revoke("key_nope").await,
            Err(Error::NotFound)
        ));

        let live = store.keys().list(&Filter::default()).await.unwrap();
        assert_eq!(
            live.iter().map(|k| &k.id).collect::<Vec<_>>(),
            vec![&other.id]
        );
        let all = store
            .keys()
            .list(&Filter {
                include_revoked: true,
                ..Filter::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, key.id, "creation order");

        // Replicas see every change after the revision they hold, revocations included.
        let since = store.keys().changed_since(other.rev).await.unwrap();
        assert_eq!(since.len(), 1);
        assert_eq!(since[0].id, key.id);
        assert!(since[0].revoked_at.is_some());
        assert!(store
            .keys()
            .changed_since(again.rev)
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn expiry_and_team_filter() {
    on_both(|store| async move {
        let team = store
            .teams()
            .create(&teams::New {
                name: "t".into(),
                ..teams::New::default()
            })
            .await
            .unwrap();
        let mut expired = new_key("old");
        expired.expires_at = Some(now_ms() - 1);
        expired.team_id = Some(team.id.clone());
        let expired = store.keys().create(&expired).await.unwrap();
        assert!(!expired.is_active(now_ms()));
        store.keys().create(&new_key("no-team")).await.unwrap();
        let of_team = store
            .keys()
            .list(&Filter {
                team_id: Some(team.id.clone()),
                include_revoked: false,
            })
            .await
            .unwrap();
        assert_eq!(of_team.len(), 1);
        assert_eq!(of_team[0].id, expired.id);
    })
    .await;
}

#[tokio::test]
async fn config_keys_are_synced() {
    on_both(|store| async move {
        let api = store.keys().create(&new_key("api")).await.unwrap();
        let mut a = new_key("a");
        a.limits.rpm = Some(60);
        let b = new_key("b");
        let report = store
            .keys()
            .sync_config(&[a.clone(), b.clone()])
            .await
            .unwrap();
        assert_eq!((report.created, report.updated, report.revoked), (2, 0, 0));
        let stored_a = store.keys().get_by_hash(&a.hash).await.unwrap().unwrap();
        assert_eq!(stored_a.source, Source::Config);
        assert_eq!(stored_a.limits.rpm, Some(60));

        // Same config again: nothing to do.
        let report = store
            .keys()
            .sync_config(&[a.clone(), b.clone()])
            .await
            .unwrap();
        assert_eq!(
            (report.created, report.updated, report.unchanged),
            (0, 0, 2)
        );

        // `a` changed, `b` dropped from the config.
        a.limits.rpm = Some(30);
        let report = store
            .keys()
            .sync_config(std::slice::from_ref(&a))
            .await
            .unwrap();
        assert_eq!((report.created, report.updated, report.revoked), (0, 1, 1));
        let stored_a2 = store.keys().get_by_hash(&a.hash).await.unwrap().unwrap();
        assert_eq!(stored_a2.id, stored_a.id, "the id is kept");
        assert_eq!(stored_a2.limits.rpm, Some(30));
        let stored_b = store.keys().get_by_hash(&b.hash).await.unwrap().unwrap();
        assert!(stored_b.revoked_at.is_some());
        // Keys made through the API are not the config's business.
        assert!(store
            .keys()
            .get(&api.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none());
    })
    .await;
}

#[tokio::test]
async fn concurrent_writes_get_distinct_ordered_revisions() {
    on_both(|store| async move {
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .keys()
                        .create(&new_key(&format!("k{i}")))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut revs = Vec::new();
        for t in tasks {
            revs.push(t.await.unwrap().rev);
        }
        revs.sort_unstable();
        revs.dedup();
        assert_eq!(revs.len(), 16);
        assert_eq!(store.keys().changed_since(0).await.unwrap().len(), 16);
        assert_eq!(store.keys().version().await.unwrap(), *revs.last().unwrap());
    })
    .await;
}

#[test]
fn limits_patch_json_semantics() {
    let p: limits::Patch = serde_json::from_value(json!({"models": null})).unwrap();
    assert_eq!(p.models, Some(None));
    assert_eq!(p.rpm, None);
}
