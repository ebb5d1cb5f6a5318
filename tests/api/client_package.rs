//! herald.js as an npm package: `static/package.json` points at the module
//! and its declarations, and `herald.d.ts` declares every public method of
//! `HeraldClient`, so the declarations cannot silently fall behind.

use serde_json::Value;

fn read(file: &str) -> String {
    let path = format!("{}/static/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn package_json_names_the_module_and_its_declarations() {
    let package: Value = serde_json::from_str(&read("package.json")).expect("package.json is JSON");
    assert_eq!(package["type"], "module");
    assert_eq!(package["main"], "herald.js");
    assert_eq!(package["types"], "herald.d.ts");
    assert_eq!(
        package["files"],
        serde_json::json!(["herald.js", "herald.d.ts"])
    );
}

#[test]
fn every_public_method_of_the_client_is_declared() {
    let js = read("herald.js");
    let class = js
        .split("export class HeraldClient")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .expect("the class body");
    let methods: Vec<&str> = class
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| !l.starts_with(' ') && !l.starts_with('_') && !l.starts_with("//"))
        .filter_map(|l| {
            l.split_once('(')
                .map(|(name, _)| name.trim_start_matches("get "))
        })
        .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric()) && !name.is_empty())
        .collect();
    assert!(methods.len() >= 10, "found {methods:?}");
    let dts = read("herald.d.ts");
    for method in methods {
        let declared = method == "constructor"
            || dts.contains(&format!("  {method}("))
            || dts.contains(&format!("  {method}<"))
            || dts.contains(&format!("readonly {method}:"));
        assert!(declared, "herald.d.ts does not declare `{method}`");
    }
}

#[test]
fn package_json_exports_point_at_files_that_exist() {
    let text = read("package.json");
    let package: Value = serde_json::from_str(&text).expect("package.json is JSON");
    let root = &package["exports"]["."];
    let files = package["files"].as_array().expect("files");
    for condition in ["import", "types"] {
        let target = root[condition]
            .as_str()
            .unwrap_or_else(|| panic!("exports[\".\"].{condition} is missing"));
        let file = target
            .strip_prefix("./")
            .unwrap_or_else(|| panic!("{condition}: {target} must start with ./"));
        let path = format!("{}/static/{file}", env!("CARGO_MANIFEST_DIR"));
        assert!(
            std::path::Path::new(&path).is_file(),
            "{condition}: {target} does not exist"
        );
        assert!(
            files.iter().any(|f| f == file),
            "{condition}: {file} is not in files"
        );
    }
    assert_eq!(
        root["import"],
        format!("./{}", package["main"].as_str().unwrap_or(""))
    );
    assert_eq!(
        root["types"],
        format!("./{}", package["types"].as_str().unwrap_or(""))
    );
    // Conditions match in order: TypeScript needs `types` before `import`.
    let exports = text.split("\"exports\"").nth(1).expect("exports");
    let at = |key: &str| exports.find(&format!("\"{key}\"")).expect(key);
    assert!(at("types") < at("import"), "`types` must come first");
}
