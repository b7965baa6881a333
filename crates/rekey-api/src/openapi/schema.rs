//! JSON Schema (OpenAPI 3.1 dialect) of proto messages as protojson writes and reads them, read
//! from the compiled descriptors: lowerCamelCase `json_name`s, 64-bit integers as strings (input
//! also as numbers), enums by name (input also by number), bytes as base64, repeated → array,
//! map → object, well-known types in their protojson forms, at most one member of a oneof.
//! Messages are `$ref`s to `#/components/schemas/<full.proto.Name>`; a message used both in
//! requests and in answers has its request flavor as `<full.proto.Name>.input`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet,
    MethodDescriptorProto,
};
use serde_json::{json, Map, Value};

/// The messages, enums and services of a descriptor set, by full name (no leading dot).
pub struct Descriptors {
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, EnumDescriptorProto>,
    methods: HashMap<String, MethodDescriptorProto>,
    services: BTreeSet<String>,
}

impl Descriptors {
    pub fn decode(bytes: &[u8]) -> Result<Self, prost::DecodeError> {
        let set = FileDescriptorSet::decode(bytes)?;
        let mut this = Self {
            messages: HashMap::new(),
            enums: HashMap::new(),
            methods: HashMap::new(),
            services: BTreeSet::new(),
        };
        for file in set.file {
            let package = file.package().to_owned();
            for message in file.message_type {
                this.add_message(&package, message);
            }
            for e in file.enum_type {
                this.enums.insert(join(&package, e.name()), e);
            }
            for service in file.service {
                let name = join(&package, service.name());
                for method in service.method {
                    this.methods
                        .insert(format!("{name}/{}", method.name()), method);
                }
                this.services.insert(name);
            }
        }
        Ok(this)
    }

    fn add_message(&mut self, scope: &str, mut message: DescriptorProto) {
        let name = join(scope, message.name());
        for nested in std::mem::take(&mut message.nested_type) {
            self.add_message(&name, nested);
        }
        for e in std::mem::take(&mut message.enum_type) {
            self.enums.insert(join(&name, e.name()), e);
        }
        self.messages.insert(name, message);
    }

    /// Every `package.Service/Method` of the set.
    pub fn methods(&self) -> BTreeSet<String> {
        self.methods.keys().cloned().collect()
    }

    /// The services of the set (`package.Service`).
    pub fn services(&self) -> &BTreeSet<String> {
        &self.services
    }

    /// A method's (request, response) message names.
    pub fn method(&self, service: &str, method: &str) -> Option<(String, String)> {
        let m = self.methods.get(&format!("{service}/{method}"))?;
        Some((
            strip_dot(m.input_type()).to_owned(),
            strip_dot(m.output_type()).to_owned(),
        ))
    }

    pub fn message(&self, name: &str) -> Option<&DescriptorProto> {
        self.messages.get(name)
    }
}

fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

fn strip_dot(name: &str) -> &str {
    name.strip_prefix('.').unwrap_or(name)
}

/// Which way a message travels: requests are read leniently, answers are written one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Input,
    Output,
}

/// Collects component schemas while schemas that refer to them are made. Make every output
/// schema before the first input one, so the `.input` names are known.
pub struct Generator<'a> {
    descriptors: &'a Descriptors,
    outputs: BTreeSet<String>,
    components: BTreeMap<String, Value>,
}

impl<'a> Generator<'a> {
    pub fn new(descriptors: &'a Descriptors) -> Self {
        Self {
            descriptors,
            outputs: BTreeSet::new(),
            components: BTreeMap::new(),
        }
    }

    pub fn into_components(self) -> BTreeMap<String, Value> {
        self.components
    }

    /// A `$ref` to the schema of message `name` (made on first use).
    pub fn reference(&mut self, name: &str, flavor: Flavor) -> Value {
        if let Some(known) = well_known(name, flavor) {
            return known;
        }
        let component = self.component_name(name, flavor);
        if !self.components.contains_key(&component) {
            self.components.insert(component.clone(), json!({}));
            let schema = self.message_schema(name, flavor, &[]);
            self.components.insert(component.clone(), schema);
        }
        json!({ "$ref": format!("#/components/schemas/{component}") })
    }

    fn component_name(&mut self, name: &str, flavor: Flavor) -> String {
        match flavor {
            Flavor::Output => {
                self.outputs.insert(name.to_owned());
                name.to_owned()
            }
            Flavor::Input if self.outputs.contains(name) => format!("{name}.input"),
            Flavor::Input => name.to_owned(),
        }
    }

    /// The object schema of message `name`, without the fields named in `without` (proto
    /// names; REST takes them from the path).
    pub fn message_schema(&mut self, name: &str, flavor: Flavor, without: &[&str]) -> Value {
        let Some(message) = self.descriptors.message(name).cloned() else {
            return json!({ "type": "object" });
        };
        let mut properties = Map::new();
        let mut oneofs: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for field in &message.field {
            if without.contains(&field.name()) {
                continue;
            }
            let json_name = if field.json_name().is_empty() {
                crate::json::lower_camel(field.name())
            } else {
                field.json_name().to_owned()
            };
            if let (Some(index), false) = (field.oneof_index, field.proto3_optional()) {
                oneofs.entry(index).or_default().push(json_name.clone());
            }
            properties.insert(json_name, self.field_schema(field, flavor));
        }
        let mut schema = json!({ "type": "object", "properties": properties });
        let mut exclusive = Vec::new();
        for members in oneofs.values() {
            for (i, a) in members.iter().enumerate() {
                for b in &members[i + 1..] {
                    exclusive.push(json!({ "not": { "required": [a, b] } }));
                }
            }
        }
        if !exclusive.is_empty() {
            schema["allOf"] = Value::Array(exclusive);
        }
        schema
    }

    fn field_schema(&mut self, field: &FieldDescriptorProto, flavor: Flavor) -> Value {
        if field.label() == Label::Repeated {
            if field.r#type() == Type::Message {
                let entry = self
                    .descriptors
                    .message(strip_dot(field.type_name()))
                    .filter(|m| m.options.as_ref().is_some_and(|o| o.map_entry()))
                    .cloned();
                if let Some(entry) = entry {
                    let value = entry
                        .field
                        .iter()
                        .find(|f| f.number() == 2)
                        .map(|f| self.single(f, flavor))
                        .unwrap_or_else(|| json!({}));
                    return json!({ "type": "object", "additionalProperties": value });
                }
            }
            return json!({ "type": "array", "items": self.single(field, flavor) });
        }
        self.single(field, flavor)
    }

    fn single(&mut self, field: &FieldDescriptorProto, flavor: Flavor) -> Value {
        let input = flavor == Flavor::Input;
        match field.r#type() {
            Type::Double | Type::Float => number(input),
            Type::Int64 | Type::Sint64 | Type::Sfixed64 => int64(input, true),
            Type::Uint64 | Type::Fixed64 => int64(input, false),
            Type::Int32 | Type::Sint32 | Type::Sfixed32 => {
                json!({ "type": "integer", "format": "int32", "minimum": i32::MIN, "maximum": i32::MAX })
            }
            Type::Uint32 | Type::Fixed32 => {
                json!({ "type": "integer", "format": "int32", "minimum": 0, "maximum": u32::MAX })
            }
            Type::Bool => json!({ "type": "boolean" }),
            Type::String => json!({ "type": "string" }),
            Type::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
            Type::Enum => self.enum_schema(strip_dot(field.type_name()), input),
            Type::Message | Type::Group => self.reference(strip_dot(field.type_name()), flavor),
        }
    }

    fn enum_schema(&self, name: &str, input: bool) -> Value {
        let Some(e) = self.descriptors.enums.get(name) else {
            return json!({ "type": "string" });
        };
        let names: Vec<&str> = e.value.iter().map(|v| v.name()).collect();
        if input {
            let numbers: Vec<i32> = e.value.iter().map(|v| v.number()).collect();
            json!({ "anyOf": [
                { "type": "string", "enum": names },
                { "type": "integer", "enum": numbers },
            ] })
        } else {
            json!({ "type": "string", "enum": names })
        }
    }
}

fn number(input: bool) -> Value {
    if input {
        json!({ "type": ["number", "string"] })
    } else {
        json!({ "anyOf": [
            { "type": "number" },
            { "type": "string", "enum": ["NaN", "Infinity", "-Infinity"] },
        ] })
    }
}

/// protojson writes 64-bit integers as decimal strings and reads strings or numbers.
fn int64(input: bool, signed: bool) -> Value {
    let (pattern, minimum, maximum) = if signed {
        ("^-?[0-9]+$", json!(i64::MIN), json!(i64::MAX))
    } else {
        ("^[0-9]+$", json!(0), json!(u64::MAX))
    };
    let format = if signed { "int64" } else { "uint64" };
    if input {
        json!({
            "type": ["string", "integer"],
            "format": format,
            "pattern": pattern,
            "minimum": minimum,
            "maximum": maximum,
        })
    } else {
        json!({ "type": "string", "format": format, "pattern": pattern })
    }
}

/// The protojson forms of the well-known types (`google.protobuf.*`).
fn well_known(name: &str, flavor: Flavor) -> Option<Value> {
    let input = flavor == Flavor::Input;
    let short = name.strip_prefix("google.protobuf.")?;
    Some(match short {
        "Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "Duration" => json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$" }),
        "Struct" | "Empty" => json!({ "type": "object" }),
        "Value" => json!({}),
        "ListValue" => json!({ "type": "array" }),
        "FieldMask" => json!({ "type": "string" }),
        "Any" => json!({
            "type": "object",
            "properties": { "@type": { "type": "string" } },
            "required": ["@type"],
        }),
        "DoubleValue" | "FloatValue" => number(input),
        "Int64Value" => int64(input, true),
        "UInt64Value" => int64(input, false),
        "Int32Value" => json!({ "type": "integer", "format": "int32" }),
        "UInt32Value" => json!({ "type": "integer", "format": "int32", "minimum": 0 }),
        "BoolValue" => json!({ "type": "boolean" }),
        "StringValue" => json!({ "type": "string" }),
        "BytesValue" => json!({ "type": "string", "contentEncoding": "base64" }),
        _ => json!({}),
    })
}
