//! `sluice plugin new NAME --lang rust|python|js`: a stage project that
//! builds and passes `sluice plugin test` as generated: the stage (drops
//! events whose `data.drop` is true, tags the others), a unit test run
//! natively, sample events, a `build.sh` and a README of three commands.
//!
//! The projects point at this Sluice checkout's SDKs (and, for Python and
//! JavaScript, at the toolchains `scripts/sdk-tools.sh` installs under its
//! target/): `--sdk`, else the checkout the running binary was built in.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// The languages a stage can be written in.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// The Rust SDK (`plugin-sdk/`), built with cargo for wasm32-wasip2.
    Rust,
    /// The Python SDK (`plugin-sdk/python`), built with componentize-py.
    Python,
    /// The JavaScript SDK (`plugin-sdk/js`), built with componentize-js.
    Js,
}

#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// The stage's name: lower case letters, digits and `-`, starting with a
    /// letter (also the plugin name the README uploads it as).
    pub name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to make the project (default: ./NAME). Must not exist, or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The Sluice checkout whose SDKs the project uses (default: the one
    /// this binary was built in).
    #[arg(long, env = "SLUICE_SDK_DIR")]
    pub sdk: Option<PathBuf>,
}

/// One file of a project: its path in the project, its template, and
/// whether it is executable.
type Template = (&'static str, &'static str, bool);

const README: &str = include_str!("plugin_new/README.md");
const EVENTS: &str = include_str!("plugin_new/events.ndjson");

fn templates(lang: Lang) -> Vec<Template> {
    let mut files: Vec<Template> = vec![("README.md", README, false), ("events.ndjson", EVENTS, false)];
    files.extend(match lang {
        Lang::Rust => [
            ("Cargo.toml", include_str!("plugin_new/rust_cargo.toml"), false),
            ("src/lib.rs", include_str!("plugin_new/rust_lib.rs"), false),
            ("build.sh", include_str!("plugin_new/rust_build.sh"), true),
        ],
        Lang::Python => [
            ("stage.py", include_str!("plugin_new/python_stage.py"), false),
            ("test_stage.py", include_str!("plugin_new/python_test.py"), false),
            ("build.sh", include_str!("plugin_new/python_build.sh"), true),
        ],
        Lang::Js => [
            ("stage.js", include_str!("plugin_new/js_stage.js"), false),
            ("stage.test.js", include_str!("plugin_new/js_test.js"), false),
            ("build.sh", include_str!("plugin_new/js_build.sh"), true),
        ],
    });
    files
}

/// Checks a stage name: what the plugin API accepts, and a valid crate,
/// module and file name in every language.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!("stage name {name:?} must be 1-64 lower case letters, digits and `-`, starting with a letter and not ending with `-`");
    }
    Ok(())
}

/// `drop-status` → `DropStatus`.
fn class_name(name: &str) -> String {
    name.split('-').filter(|p| !p.is_empty()).map(|p| p[..1].to_ascii_uppercase() + &p[1..]).collect()
}

/// The Sluice checkout: `--sdk`, else the nearest ancestor of the binary
/// holding `wit/stage.wit` and the SDKs.
fn find_sdk(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let is_checkout = |dir: &Path| dir.join("wit/stage.wit").is_file() && dir.join("plugin-sdk/python/sluice_sdk").is_dir();
    if let Some(dir) = given {
        let dir = std::fs::canonicalize(&dir).with_context(|| format!("--sdk {}", dir.display()))?;
        if !is_checkout(&dir) {
            bail!("--sdk {} is not a Sluice checkout (no wit/stage.wit and plugin-sdk/)", dir.display());
        }
        return Ok(dir);
    }
    let exe = std::env::current_exe().context("finding the sluice binary")?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    exe.ancestors()
        .find(|dir| is_checkout(dir))
        .map(Path::to_path_buf)
        .with_context(|| format!("{} is not inside a Sluice checkout: pass --sdk <checkout> (or set SLUICE_SDK_DIR)", exe.display()))
}

/// Fills `{{key}}` placeholders.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template.to_string();
    for (key, value) in values {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    text
}

/// Makes the project; the answer is the exit code (0; errors say what to fix).
pub fn run(args: NewArgs) -> anyhow::Result<i32> {
    check_name(&args.name)?;
    let sdk = find_sdk(args.sdk)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?.next().is_some() {
        bail!("{} already exists and is not empty", dir.display());
    }
    let sdk_text = sdk.to_string_lossy().into_owned();
    let class = class_name(&args.name);
    let lib = args.name.replace('-', "_");
    let (language, source, unit_test) = match args.lang {
        Lang::Rust => ("Rust", "src/lib.rs", "cargo test".to_string()),
        Lang::Python => ("Python", "stage.py", format!("{sdk_text}/target/sdk-tools/venv/bin/python -m pytest")),
        Lang::Js => ("JavaScript", "stage.js", "node --test".to_string()),
    };
    let values = [
        ("name", args.name.as_str()),
        ("class", class.as_str()),
        ("lib", lib.as_str()),
        ("sdk", sdk_text.as_str()),
        ("language", language),
        ("source", source),
        ("unit_test", unit_test.as_str()),
    ];
    for (path, template, executable) in templates(args.lang) {
        write(&dir.join(path), &fill(template, &values), executable)?;
    }
    match args.lang {
        // pytest finds the stage and the SDK.
        Lang::Python => write(&dir.join("pytest.ini"), &format!("[pytest]\npythonpath = . {sdk_text}/plugin-sdk/python\n"), false)?,
        // `import ... from "sluice-sdk"` resolves for node's tests too.
        Lang::Js => {
            write(&dir.join("package.json"), "{\n  \"type\": \"module\",\n  \"private\": true\n}\n", false)?;
            std::fs::create_dir_all(dir.join("node_modules")).context("creating node_modules")?;
            link(&sdk.join("plugin-sdk/js"), &dir.join("node_modules/sluice-sdk"))?;
        }
        Lang::Rust => {}
    }
    println!("made {} ({language}); next: cd {} && ./build.sh (see README.md)", dir.display(), dir.display());
    Ok(0)
}

fn write(path: &Path, text: &str, executable: bool) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).with_context(|| format!("making {} executable", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = executable;
    Ok(())
}

#[cfg(unix)]
fn link(target: &Path, at: &Path) -> anyhow::Result<()> {
    std::os::unix::fs::symlink(target, at).with_context(|| format!("linking {} to {}", at.display(), target.display()))
}

#[cfg(not(unix))]
fn link(target: &Path, at: &Path) -> anyhow::Result<()> {
    anyhow::bail!("linking {} to {}: symbolic links are only made on unix", at.display(), target.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_classes() {
        for good in ["a", "drop-status", "geo2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Drop", "2x", "a_b", "a-", "a b", "ü"] {
            assert!(check_name(bad).unwrap_err().to_string().contains("lower case"), "{bad}");
        }
        assert_eq!(class_name("drop-status"), "DropStatus");
        assert_eq!(fill("{{a}}-{{b}}{{a}}", &[("a", "x"), ("b", "y")]), "x-yx");
    }

    #[test]
    fn every_placeholder_is_filled() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let values = [("name", "n"), ("class", "N"), ("lib", "n"), ("sdk", "/s"), ("language", "L"), ("source", "f"), ("unit_test", "t")];
            for (path, template, _) in templates(lang) {
                assert!(!fill(template, &values).contains("{{"), "{lang:?} {path}");
            }
        }
    }
}
