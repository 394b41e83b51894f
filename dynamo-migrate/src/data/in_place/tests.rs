use aws_sdk_dynamodb::types::AttributeValue as A;

use super::*;

fn s(text: &str) -> A {
    A::S(text.to_owned())
}

fn item(pairs: &[(&str, A)]) -> Item {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn keys() -> Vec<String> {
    vec!["id".to_owned()]
}

fn read() -> Item {
    item(&[("id", s("1")), ("email", s(" A@X ")), ("name", s("Ada")), ("phone", s("555"))])
}

/// What a typed function whose input type holds id, email and name saw of `read()`.
fn seen() -> Item {
    item(&[("id", s("1")), ("email", s(" A@X ")), ("name", s("Ada"))])
}

fn typed(change: Change) -> Mapped {
    Mapped {
        change,
        seen: Some(seen()),
        not_held: vec![("phone".to_owned(), "a string (S)")],
        absent: vec!["nickname".to_owned()],
    }
}

#[test]
fn an_unchanged_item_is_not_written() {
    assert_eq!(plan(&read(), &keys(), typed(Change::Put(seen()))).unwrap(), None);
    assert_eq!(plan(&read(), &keys(), typed(Change::Keep)).unwrap(), None);
    let raw = Mapped { change: Change::Put(read()), seen: None, not_held: vec![], absent: vec![] };
    assert_eq!(plan(&read(), &keys(), raw).unwrap(), None);
}

#[test]
fn only_changed_attributes_are_written_on_the_condition_that_what_was_seen_holds() {
    let mut new = seen();
    new.insert("email_normalised".into(), s("a@x"));
    new.remove("name");
    let write = plan(&read(), &keys(), typed(Change::Put(new))).unwrap().unwrap();
    assert_eq!(write.key, item(&[("id", s("1"))]));
    assert_eq!(write.op, Op::Update { set: vec![("email_normalised".into(), s("a@x"))], remove: vec!["name".into()] });
    // Changed attributes first, then the rest of what the type saw; never the attribute it did
    // not hold (phone), which the application may change freely.
    // And the attribute the type could hold but the item lacked (nickname) must stay absent.
    let mut expected: Vec<(String, Option<A>)> = vec![
        ("email_normalised".into(), None),
        ("name".into(), Some(s("Ada"))),
        ("email".into(), Some(s(" A@X "))),
        ("nickname".into(), None),
    ];
    let mut got = write.expect.clone();
    assert_eq!(got.remove(0), expected.remove(0), "the changed attribute comes first");
    got.sort_by(|a, b| a.0.cmp(&b.0));
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, expected);

    let e = write.expressions("id");
    assert_eq!(e.update.as_deref(), Some("SET #a0 = :v0 REMOVE #a1"));
    assert_eq!(
        e.condition,
        "attribute_exists(#a2) AND attribute_not_exists(#a3) AND #a4 = :v1 AND #a5 = :v2 AND attribute_not_exists(#a6)",
        "{:?}",
        e.names
    );
}

#[test]
fn a_raw_function_saw_every_attribute() {
    let mut new = read();
    new.insert("name".into(), s("Ada L."));
    let write =
        plan(&read(), &keys(), Mapped { change: Change::Put(new), seen: None, not_held: vec![], absent: vec![] })
            .unwrap()
            .unwrap();
    assert_eq!(write.op, Op::Update { set: vec![("name".into(), s("Ada L."))], remove: vec![] });
    let mut names: Vec<&str> = write.expect.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, ["email", "name", "phone"]);
}

#[test]
fn deletes_are_conditional_and_keys_cannot_change() {
    let write = plan(&read(), &keys(), typed(Change::Delete)).unwrap().unwrap();
    assert_eq!(write.op, Op::Delete);
    assert_eq!(write.expect.len(), 3, "email and name as seen, nickname absent: {:?}", write.expect);
    assert_eq!(write.expressions("id").update, None);

    let mut moved = seen();
    moved.insert("id".into(), s("2"));
    let error = plan(&read(), &keys(), typed(Change::Put(moved))).unwrap_err();
    assert_eq!(error, "the transform changed key attribute id; a key cannot change in place");
}

#[test]
fn the_condition_stays_within_dynamodb_s_expression_limit_but_keeps_every_changed_attribute() {
    let mut wide = item(&[("id", s("1"))]);
    for i in 0..400 {
        wide.insert(format!("attribute_{i:03}"), s("x"));
    }
    let mut new = wide.clone();
    new.insert("attribute_399".into(), s("changed"));
    let write = plan(&wide, &keys(), Mapped { change: Change::Put(new), seen: None, not_held: vec![], absent: vec![] })
        .unwrap()
        .unwrap();
    let e = write.expressions("id");
    assert!(e.condition.len() <= 4_096, "{}", e.condition.len());
    assert!(e.condition.starts_with("attribute_exists(#a1) AND #a2 = :v1 AND"), "{}", &e.condition[..80]);
    assert_eq!(e.names[2].1, "attribute_399", "the changed attribute comes first");
    let used = |p: &str| {
        e.condition.contains(&format!("{p} "))
            || e.condition.contains(&format!("({p})"))
            || e.update.as_deref().is_some_and(|u| u.contains(p))
    };
    let referenced = e.names.iter().filter(|(p, _)| used(p)).count();
    assert_eq!(referenced, e.names.len(), "no placeholder is left unused (DynamoDB refuses them)");
}
