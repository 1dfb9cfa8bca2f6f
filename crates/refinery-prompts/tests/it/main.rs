//! Integration tests of `refinery-prompts`: the embedded prompts are exactly the plugin's
//! agent files on disk, so an edit to a file can never leave a stale embedded copy.

use std::path::Path;

use refinery_prompts::{Role, split_front_matter};

#[test]
fn embedded_prompts_match_the_plugin_files_on_disk() {
    let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugin/agents");
    let mut on_disk: Vec<String> = fs_err::read_dir(&agents)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            std::path::Path::new(name)
                .extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("md"))
        })
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = Role::ALL
        .iter()
        .map(|role| format!("{}.md", role.name()))
        .collect();
    embedded.sort();
    assert_eq!(
        on_disk, embedded,
        "every agent file must be a Role and vice versa"
    );
    for role in Role::ALL {
        let text = fs_err::read_to_string(agents.join(format!("{}.md", role.name()))).unwrap();
        assert_eq!(role.source(), text);
        assert_eq!(role.prompt(), split_front_matter(&text).unwrap().1);
    }
}
