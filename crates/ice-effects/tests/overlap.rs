//! A sandbox that overlaps ICE's home (contains it, or lies inside it) is refused when the effectors open: an agent
//! allowed to write the sandbox would otherwise read the keys and rewrite the config.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ice_effects::{Effectors, EffectsConfig};

#[test]
fn a_sandbox_overlapping_the_home_is_refused() {
    let project = tempfile::tempdir().unwrap();
    let home = project.path().join(".ice");
    std::fs::create_dir_all(&home).unwrap();
    for sandbox in [".", ".ice", ".ice/sandbox"] {
        let config = EffectsConfig { sandbox: sandbox.into(), ..EffectsConfig::default() };
        let err = Effectors::new(&config, project.path(), &home).err().unwrap_or_else(|| panic!("{sandbox} accepted"));
        assert_eq!(err.code, ice_core::ErrorCode::BadConfig, "{sandbox}: {}", err.message);
        assert!(err.message.contains("overlaps"), "{}", err.message);
    }
    let config = EffectsConfig { sandbox: "sandbox".into(), ..EffectsConfig::default() };
    assert!(Effectors::new(&config, project.path(), &home).is_ok(), "a sandbox beside the home is fine");
}
