//! What README.md says `watch` does and the other scenarios leave out: every defined guest is
//! judged when the watcher connects and again when it reconnects (`op=audit` lines, a fix
//! under `action = "fix"`), and `action = "fix"` leaves a guest alone when `phbguard fix`
//! cannot make it keep every rule.

use super::*;

#[test]
#[ignore = "needs libvirtd"]
fn defined_guests_are_judged_when_the_watcher_connects_and_again_when_it_reconnects() {
    let _one = serial();
    let mut w = World::new("warn");
    // Defined before any watcher runs: only the judging at connect can see it.
    let name = format!("{PREFIX}at-connect");
    w.define(&name, &guest(&name, &hostdev("0002:01:00.0", 0, 5)));
    let before = w.definition(&name);
    let audited = [
        ": warned ",
        &format!("domain={name} "),
        "op=audit ",
        "rule=hostdev-on-default-phb",
    ];

    w.start_watcher();
    let line = w.log.wait_for(&audited);
    assert!(line.contains("action=warn:"), "{line}");

    // libvirtd restarts, the guest stays defined: judged again once the watcher reconnects.
    let restart = Command::new(repo().join("tests/e2e/libvirtd-sandbox.sh"))
        .arg("restart-daemon")
        .output()
        .unwrap();
    assert!(
        restart.status.success(),
        "sandbox restart-daemon: {}",
        text(&restart)
    );
    w.log.wait_for(&[": disconnected "]);
    eventually("the watcher to reconnect and judge the guest again", || {
        (w.log.matching(&audited).len() == 2).then_some(())
    });
    w.assert_watcher_running();
    assert_eq!(w.definition(&name), before, "redefined under action=warn");
    assert!(w.stop_watcher().success());

    // The same guest, the next watcher with action=fix: fixed at connect.
    w.write_policy("[watch]\naction = \"fix\"\n");
    w.start_watcher();
    let redefined = w
        .log
        .wait_for(&[": redefined ", &format!("domain={name} "), "op=audit "]);
    assert!(redefined.contains("changes=2:"), "{redefined}");
    let fixed = w
        .log
        .matching(&[": fixed ", &format!("domain={name} "), "op=audit "]);
    assert_eq!(fixed.len(), 1, "{fixed:#?}");
    assert_eq!(w.errors(&w.definition(&name)), Vec::<String>::new());
    assert!(w.stop_watcher().success());
}

#[test]
#[ignore = "needs libvirtd"]
fn fix_leaves_a_guest_that_fix_cannot_make_compliant_as_it_is() {
    let _one = serial();
    let mut w = World::new("fix");
    let events = LifecycleEvents::listen(w.work.path());
    w.start_watcher();

    // A hostdev on the default PHB that the host does not have: it has to move, but to a PHB
    // of its own IOMMU group, which nobody knows.
    let name = format!("{PREFIX}unfixable");
    w.define(&name, &guest(&name, &hostdev("0abc:01:00.0", 0, 5)));
    let before = w.definition(&name);
    let line = w.log.wait_for(&[": unfixable ", &format!("domain={name} ")]);
    assert!(line.contains("its IOMMU group is unknown"), "{line}");

    w.quiesce(&events);
    assert_eq!(events.defined(&name), ["Added"], "phbguard defined it");
    assert_eq!(w.definition(&name), before);
    // Every line it sent: the finding told once, as a warning left in place; no redefine.
    let about: Vec<String> = w
        .log
        .take()
        .into_iter()
        .filter(|l| l.contains(&format!("domain={name} ")))
        .collect();
    let verbs: Vec<&str> = about
        .iter()
        .filter_map(|l| l.split(": ").nth(1)?.split(' ').next())
        .collect();
    assert!(
        !verbs.contains(&"redefined") && !verbs.contains(&"fixed"),
        "{about:#?}"
    );
    assert_eq!(
        about
            .iter()
            .filter(|l| l.contains(": warned ") && l.contains("rule=hostdev-on-default-phb"))
            .count(),
        1,
        "{about:#?}"
    );
}
