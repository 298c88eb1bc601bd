//! What each entry point of a shader binds, read from its WGSL by naga: the names behind the
//! binding numbers, so that Rust binds buffers by the names the shader gives them and a
//! binding bound under a wrong, missing or extra name is an error that names it.

use std::collections::HashMap;

/// The group-0 bindings each entry point uses, by entry point: `(binding, variable name)` in
/// binding order.
pub type EntryBindings = HashMap<String, Vec<(u32, String)>>;

/// Reflects `source` (WGSL). Its errors are the parser's or the validator's message.
pub fn entry_bindings(source: &str) -> Result<EntryBindings, String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| e.emit_to_string(source))?;
    let mut out = EntryBindings::new();
    for (index, entry) in module.entry_points.iter().enumerate() {
        let uses = info.get_entry_point(index);
        let mut bindings: Vec<(u32, String)> = module
            .global_variables
            .iter()
            .filter(|(handle, _)| !uses[*handle].is_empty())
            .filter_map(|(_, var)| {
                let b = var.binding.as_ref().filter(|b| b.group == 0)?;
                Some((b.binding, var.name.clone().unwrap_or_default()))
            })
            .collect();
        bindings.sort();
        out.insert(entry.name.clone(), bindings);
    }
    Ok(out)
}
