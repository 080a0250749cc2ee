use serde_json::json;
use store::keys::Filter;
use store::teams::{New, Patch};
use store::Error;

use crate::keys::new_key;
use crate::on_both;

fn team(name: &str) -> New {
    New {
        name: name.into(),
        ..New::default()
    }
}

#[tokio::test]
async fn team_crud_and_delete_revokes_its_keys() {
    on_both(|store| async move {
        let mut new = team("research");
        new.limits.tpm = Some(50_000);
        new.limits.budget_usd = Some(100.0);
        new.metadata = json!({"cost_center": 42}).as_object().unwrap().clone();
        let t = store.teams().create(&new).await.unwrap();
        assert!(t.id.starts_with("team_") && t.id.len() == 25, "{}", t.id);
        assert_eq!(t.limits, new.limits);
        assert_eq!(t.metadata, new.metadata);
        assert_eq!(store.teams().get(&t.id).await.unwrap().as_ref(), Some(&t));
        assert_eq!(
            store
                .teams()
                .get_by_name("research")
                .await
                .unwrap()
                .as_ref(),
            Some(&t)
        );
        assert_eq!(store.teams().get("team_nope").await.unwrap(), None);
        assert!(matches!(
            store.teams().create(&team("research")).await,
            Err(Error::Conflict(_))
        ));

        let patch: Patch =
            serde_json::from_value(json!({"budget_usd": null, "rpm": 10, "name": "r&d"})).unwrap();
        let changed = store.teams().update(&t.id, &patch).await.unwrap();
        assert_eq!(changed.name, "r&d");
        assert_eq!(changed.limits.budget_usd, None);
        assert_eq!(changed.limits.rpm, Some(10));
        assert_eq!(changed.limits.tpm, Some(50_000));
        assert!(changed.rev > t.rev);
        assert!(matches!(
            store.teams().update("team_nope", &patch).await,
            Err(Error::NotFound)
        ));
        let other = store.teams().create(&team("other")).await.unwrap();
        let rename = Patch {
            name: Some("other".into()),
            ..Patch::default()
        };
        assert!(matches!(
            store.teams().update(&t.id, &rename).await,
            Err(Error::Conflict(_))
        ));

        let mut k = new_key("member");
        k.team_id = Some(t.id.clone());
        let member = store.keys().create(&k).await.unwrap();
        let keys_before = store.keys().version().await.unwrap();

        let deleted = store.teams().delete(&t.id).await.unwrap();
        assert!(deleted.deleted_at.is_some());
        assert_eq!(
            store.teams().delete(&t.id).await.unwrap().deleted_at,
            deleted.deleted_at
        );
        assert!(matches!(
            store.teams().delete("team_nope").await,
            Err(Error::NotFound)
        ));
        let member = store.keys().get(&member.id).await.unwrap().unwrap();
        assert!(
            member.revoked_at.is_some(),
            "a deleted team's keys are revoked"
        );
        assert!(member.rev > keys_before, "and replicas see it");
        assert!(store
            .keys()
            .list(&Filter::default())
            .await
            .unwrap()
            .is_empty());

        // A deleted team: out of the live list, not found by name, its name free again,
        // and no new key may join it.
        let live = store.teams().list(false).await.unwrap();
        assert_eq!(
            live.iter().map(|t| &t.id).collect::<Vec<_>>(),
            vec![&other.id]
        );
        assert_eq!(store.teams().list(true).await.unwrap().len(), 2);
        assert_eq!(store.teams().get_by_name("r&d").await.unwrap(), None);
        store.teams().create(&team("r&d")).await.unwrap();
        let mut late = new_key("late");
        late.team_id = Some(t.id.clone());
        assert!(matches!(
            store.keys().create(&late).await,
            Err(Error::MissingReference(_))
        ));

        let changes = store.teams().changed_since(other.rev).await.unwrap();
        assert_eq!(changes.len(), 2, "the deleted team and the new one");
        assert_eq!(changes[0].id, t.id);
        assert_eq!(store.teams().version().await.unwrap(), changes[1].rev);
    })
    .await;
}
