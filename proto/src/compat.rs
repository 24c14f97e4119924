//! Wire-compatibility check of the contracts against a committed baseline.
//!
//! The descriptor set is flattened into one line per contract element (`field`, `enum value`,
//! `rpc`), keyed by its full name. A change is breaking when a baseline key disappears or its
//! value (number, type, label, streaming) changes; new keys are always allowed.

use std::collections::BTreeMap;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// Flattened contract: full element name to its wire-relevant shape.
pub type Contract = BTreeMap<String, String>;

/// Flattens an encoded `FileDescriptorSet`.
pub fn flatten(descriptor_set: &[u8]) -> Result<Contract, prost::DecodeError> {
    let set = FileDescriptorSet::decode(descriptor_set)?;
    let mut out = Contract::new();
    for file in &set.file {
        let package = file.package();
        for message in &file.message_type {
            flatten_message(&mut out, package, message);
        }
        for enumeration in &file.enum_type {
            flatten_enum(&mut out, package, enumeration);
        }
        for service in &file.service {
            for method in &service.method {
                out.insert(
                    format!("rpc {package}.{}.{}", service.name(), method.name()),
                    format!(
                        "{}{} -> {}{}",
                        if method.client_streaming() { "stream " } else { "" },
                        method.input_type(),
                        if method.server_streaming() { "stream " } else { "" },
                        method.output_type(),
                    ),
                );
            }
        }
    }
    Ok(out)
}

fn flatten_message(out: &mut Contract, scope: &str, message: &DescriptorProto) {
    let name = format!("{scope}.{}", message.name());
    // Map entries are synthetic messages; their fields are still checked through the map field.
    for field in &message.field {
        let type_name = match field.r#type() {
            Type::Message | Type::Enum => field.type_name().to_string(),
            other => other.as_str_name().to_string(),
        };
        let label = match field.label() {
            Label::Repeated => "repeated",
            Label::Required => "required",
            Label::Optional => "singular",
        };
        out.insert(
            format!("field {name}.{}", field.name()),
            format!("{} {label} {type_name}", field.number()),
        );
    }
    for nested in &message.nested_type {
        flatten_message(out, &name, nested);
    }
    for enumeration in &message.enum_type {
        flatten_enum(out, &name, enumeration);
    }
}

fn flatten_enum(out: &mut Contract, scope: &str, enumeration: &prost_types::EnumDescriptorProto) {
    for value in &enumeration.value {
        out.insert(
            format!("enum {scope}.{}.{}", enumeration.name(), value.name()),
            value.number().to_string(),
        );
    }
}

/// Renders a contract as the baseline file's text: `key = value` lines, sorted.
pub fn render(contract: &Contract) -> String {
    let header = "# Wire contract of the protos: one line per field, enum value and RPC. A test fails when a line\n\
                  # disappears or changes; regenerate after a compatible addition (see proto/tests/compat.rs).\n";
    header.to_string() + &contract.iter().map(|(k, v)| format!("{k} = {v}\n")).collect::<String>()
}

/// Parses a baseline file.
pub fn parse(text: &str) -> Contract {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(" = "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Breaking changes of `current` against `baseline`, one sentence each.
pub fn breaking_changes(baseline: &Contract, current: &Contract) -> Vec<String> {
    baseline
        .iter()
        .filter_map(|(key, was)| match current.get(key) {
            None => Some(format!("{key} was removed (was {was})")),
            Some(now) if now != was => Some(format!("{key} changed from `{was}` to `{now}`")),
            Some(_) => None,
        })
        .collect()
}
