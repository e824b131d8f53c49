//! What a reflection service knows: the files of every registered service, by name, and
//! where each symbol and extension is declared; and the answer to each kind of question.
//!
//! Built once, when the server is built, from the descriptors the services carry; read-only
//! afterwards, shared by every reflection stream. The descriptors go out as the bytes the
//! services embedded (never re-encoded).

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;
use prost::Message as _;
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto};

use super::v1::server_reflection_request::MessageRequest;
use super::v1::server_reflection_response::MessageResponse;
use super::v1::{
    ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse, ListServiceResponse, ServerReflectionRequest,
    ServerReflectionResponse, ServiceResponse,
};
use crate::error::{ConfigErrorKind, Error};
use crate::status::Code;

/// One known file.
struct File {
    /// The serialized `FileDescriptorProto`, as its service carried it.
    bytes: Bytes,
    /// The names of the files it imports.
    dependencies: Vec<String>,
}

/// Whether a symbol names a message type (the only kind that has extension numbers).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Message,
    Other,
}

/// The files, symbols and extensions of a server's services.
pub(crate) struct Index {
    /// The services the server offers, in registration order.
    services: Vec<String>,
    files: HashMap<String, File>,
    /// Fully qualified symbol (no leading dot) → the file declaring it.
    symbols: HashMap<String, (String, Kind)>,
    /// (extended message, field number) → the file declaring the extension.
    extensions: HashMap<(String, i32), String>,
}

/// The set of file names a reflection stream has already carried.
pub(crate) type Sent = HashSet<String>;

impl Index {
    /// Indexes `services`: each service's name and the serialized descriptors it carries.
    /// A file carried by several services is indexed once (the first copy wins); a symbol
    /// declared twice keeps its first file. Bytes that are no `FileDescriptorProto` are a
    /// configuration error naming the service.
    pub(crate) fn build<'a>(services: impl IntoIterator<Item = (&'a str, &'a [Bytes])>) -> Result<Index, Error> {
        let mut index = Index {
            services: Vec::new(),
            files: HashMap::new(),
            symbols: HashMap::new(),
            extensions: HashMap::new(),
        };
        for (service, descriptors) in services {
            if !index.services.iter().any(|s| s == service) {
                index.services.push(service.to_string());
            }
            for bytes in descriptors {
                let file = FileDescriptorProto::decode(bytes.clone()).map_err(|e| {
                    Error::config_kind(ConfigErrorKind::Setting, format!(
                        "service {service} carries a file descriptor that does not decode as a FileDescriptorProto ({e})"
                    ))
                })?;
                if index.files.contains_key(file.name()) {
                    continue;
                }
                index.add_file(&file);
                index.files.insert(
                    file.name().to_string(),
                    File {
                        bytes: bytes.clone(),
                        dependencies: file.dependency.clone(),
                    },
                );
            }
        }
        Ok(index)
    }

    /// The names of the services, in registration order.
    pub(crate) fn services(&self) -> &[String] {
        &self.services
    }

    fn symbol(&mut self, name: String, file: &str, kind: Kind) {
        self.symbols.entry(name).or_insert_with(|| (file.to_string(), kind));
    }

    fn add_file(&mut self, file: &FileDescriptorProto) {
        let name = file.name();
        let scope = file.package();
        for message in &file.message_type {
            self.add_message(scope, message, name);
        }
        for enumeration in &file.enum_type {
            self.add_enum(scope, enumeration, name);
        }
        for extension in &file.extension {
            self.add_extension(scope, extension, name);
        }
        for service in &file.service {
            let full = join(scope, service.name());
            for method in &service.method {
                self.symbol(join(&full, method.name()), name, Kind::Other);
            }
            self.symbol(full, name, Kind::Other);
        }
    }

    fn add_message(&mut self, scope: &str, message: &DescriptorProto, file: &str) {
        let full = join(scope, message.name());
        for field in &message.field {
            self.symbol(join(&full, field.name()), file, Kind::Other);
        }
        for oneof in &message.oneof_decl {
            self.symbol(join(&full, oneof.name()), file, Kind::Other);
        }
        for nested in &message.nested_type {
            self.add_message(&full, nested, file);
        }
        for enumeration in &message.enum_type {
            self.add_enum(&full, enumeration, file);
        }
        for extension in &message.extension {
            self.add_extension(&full, extension, file);
        }
        self.symbol(full, file, Kind::Message);
    }

    /// An enum and its values; the values are named in the enum's own scope, as protobuf
    /// names them (`pkg.Outer.VALUE`, not `pkg.Outer.Enum.VALUE`).
    fn add_enum(&mut self, scope: &str, enumeration: &EnumDescriptorProto, file: &str) {
        for value in &enumeration.value {
            self.symbol(join(scope, value.name()), file, Kind::Other);
        }
        self.symbol(join(scope, enumeration.name()), file, Kind::Other);
    }

    fn add_extension(&mut self, scope: &str, extension: &FieldDescriptorProto, file: &str) {
        let extended = extension.extendee().trim_start_matches('.').to_string();
        self.extensions.entry((extended, extension.number())).or_insert_with(|| file.to_string());
        self.symbol(join(scope, extension.name()), file, Kind::Other);
    }

    /// The answer to `request`; `sent` records the files this stream has carried.
    pub(crate) fn answer(&self, request: ServerReflectionRequest, sent: &mut Sent) -> ServerReflectionResponse {
        let response = match &request.message_request {
            Some(MessageRequest::FileByFilename(name)) => self
                .file_with_dependencies(name, sent)
                .ok_or_else(|| format!("no file named {name:?} is known to this server")),
            Some(MessageRequest::FileContainingSymbol(symbol)) => {
                let symbol = symbol.trim_start_matches('.');
                match self.symbols.get(symbol) {
                    Some((file, _)) => self
                        .file_with_dependencies(file, sent)
                        .ok_or_else(|| format!("the file {file:?} declaring {symbol} is not known")),
                    None => Err(format!("no symbol named {symbol:?} is known to this server")),
                }
            }
            Some(MessageRequest::FileContainingExtension(extension)) => {
                let extended = extension.containing_type.trim_start_matches('.');
                let number = extension.extension_number;
                match self.extensions.get(&(extended.to_string(), number)) {
                    Some(file) => self
                        .file_with_dependencies(file, sent)
                        .ok_or_else(|| format!("the file {file:?} declaring extension {number} of {extended} is not known")),
                    None => Err(format!("no extension {number} of {extended:?} is known to this server")),
                }
            }
            Some(MessageRequest::AllExtensionNumbersOfType(message)) => {
                let message = message.trim_start_matches('.');
                match self.symbols.get(message) {
                    Some((_, Kind::Message)) => {
                        let mut numbers: Vec<i32> = self
                            .extensions
                            .keys()
                            .filter(|(extended, _)| extended == message)
                            .map(|(_, number)| *number)
                            .collect();
                        numbers.sort_unstable();
                        Ok(MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse {
                            base_type_name: message.to_string(),
                            extension_number: numbers,
                        }))
                    }
                    _ => Err(format!("no message type named {message:?} is known to this server")),
                }
            }
            Some(MessageRequest::ListServices(_)) => Ok(MessageResponse::ListServicesResponse(ListServiceResponse {
                service: self.services.iter().map(|name| ServiceResponse { name: name.clone() }).collect(),
            })),
            None => {
                return respond(
                    request,
                    MessageResponse::ErrorResponse(ErrorResponse {
                        error_code: Code::InvalidArgument.as_i32(),
                        error_message: "the request asks nothing: set one of its message_request fields".into(),
                    }),
                )
            }
        };
        let response = response.unwrap_or_else(|message| {
            MessageResponse::ErrorResponse(ErrorResponse {
                error_code: Code::NotFound.as_i32(),
                error_message: message,
            })
        });
        respond(request, response)
    }

    /// The file named `name`, then the files it imports, directly or not, that this stream
    /// has not carried yet (the file itself always goes: it is what was asked for).
    fn file_with_dependencies(&self, name: &str, sent: &mut Sent) -> Option<MessageResponse> {
        let file = self.files.get(name)?;
        let mut out = vec![file.bytes.clone()];
        sent.insert(name.to_string());
        let mut queue: VecDeque<&str> = file.dependencies.iter().map(String::as_str).collect();
        while let Some(dependency) = queue.pop_front() {
            if sent.contains(dependency) {
                continue;
            }
            // A dependency no service carried is left out: the client will say what it misses.
            if let Some(file) = self.files.get(dependency) {
                sent.insert(dependency.to_string());
                out.push(file.bytes.clone());
                queue.extend(file.dependencies.iter().map(String::as_str));
            }
        }
        Some(MessageResponse::FileDescriptorResponse(FileDescriptorResponse {
            file_descriptor_proto: out,
        }))
    }
}

fn respond(request: ServerReflectionRequest, response: MessageResponse) -> ServerReflectionResponse {
    ServerReflectionResponse {
        valid_host: request.host.clone(),
        original_request: Some(request),
        message_response: Some(response),
    }
}

/// `scope.name`, or `name` in the empty scope.
fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::super::v1::ExtensionRequest;
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{EnumValueDescriptorProto, MethodDescriptorProto, OneofDescriptorProto, ServiceDescriptorProto};

    fn field(name: &str, number: i32) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            label: Some(Label::Optional as i32),
            r#type: Some(Type::Int32 as i32),
            ..Default::default()
        }
    }

    fn extension(name: &str, extendee: &str, number: i32) -> FieldDescriptorProto {
        FieldDescriptorProto {
            extendee: Some(extendee.into()),
            ..field(name, number)
        }
    }

    /// base.proto (package `a`): message `Outer` with field `x`, oneof `choice`, nested
    /// message `Inner` and nested enum `Colour { RED }`, extension range use; top-level enum
    /// `Mood { HAPPY }`. ext.proto (package `b`, imports base.proto): extensions 100 (top
    /// level) and 101 (nested in `Holder`) of `a.Outer`, and service `Svc.Do`.
    fn files() -> Vec<Bytes> {
        let base = FileDescriptorProto {
            name: Some("base.proto".into()),
            package: Some("a".into()),
            syntax: Some("proto2".into()),
            message_type: vec![DescriptorProto {
                name: Some("Outer".into()),
                field: vec![field("x", 1)],
                oneof_decl: vec![OneofDescriptorProto {
                    name: Some("choice".into()),
                    ..Default::default()
                }],
                nested_type: vec![DescriptorProto {
                    name: Some("Inner".into()),
                    ..Default::default()
                }],
                enum_type: vec![EnumDescriptorProto {
                    name: Some("Colour".into()),
                    value: vec![EnumValueDescriptorProto {
                        name: Some("RED".into()),
                        number: Some(0),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            enum_type: vec![EnumDescriptorProto {
                name: Some("Mood".into()),
                value: vec![EnumValueDescriptorProto {
                    name: Some("HAPPY".into()),
                    number: Some(0),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let ext = FileDescriptorProto {
            name: Some("ext.proto".into()),
            package: Some("b".into()),
            syntax: Some("proto2".into()),
            dependency: vec!["base.proto".into()],
            extension: vec![extension("top", ".a.Outer", 100)],
            message_type: vec![DescriptorProto {
                name: Some("Holder".into()),
                extension: vec![extension("nested", ".a.Outer", 101)],
                ..Default::default()
            }],
            service: vec![ServiceDescriptorProto {
                name: Some("Svc".into()),
                method: vec![MethodDescriptorProto {
                    name: Some("Do".into()),
                    input_type: Some(".a.Outer".into()),
                    output_type: Some(".b.Holder".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        vec![Bytes::from(ext.encode_to_vec()), Bytes::from(base.encode_to_vec())]
    }

    fn index() -> Index {
        let files = files();
        Index::build([("b.Svc", files.as_slice()), ("x.HandBuilt", &[][..])]).unwrap()
    }

    fn ask(index: &Index, request: MessageRequest, sent: &mut Sent) -> MessageResponse {
        let response = index.answer(
            ServerReflectionRequest {
                host: "h".into(),
                message_request: Some(request.clone()),
            },
            sent,
        );
        assert_eq!(response.valid_host, "h");
        assert_eq!(response.original_request.unwrap().message_request, Some(request));
        response.message_response.unwrap()
    }

    fn file_names(response: MessageResponse) -> Vec<String> {
        match response {
            MessageResponse::FileDescriptorResponse(files) => files
                .file_descriptor_proto
                .into_iter()
                .map(|b| FileDescriptorProto::decode(b).unwrap().name().to_string())
                .collect(),
            other => panic!("expected files, got {other:?}"),
        }
    }

    fn not_found(response: MessageResponse) -> String {
        match response {
            MessageResponse::ErrorResponse(e) => {
                assert_eq!(e.error_code, Code::NotFound.as_i32(), "{e:?}");
                e.error_message
            }
            other => panic!("expected NOT_FOUND, got {other:?}"),
        }
    }

    #[test]
    fn every_kind_of_symbol_is_found_in_its_file() {
        let index = index();
        for (symbol, file) in [
            ("a.Outer", "base.proto"),
            (".a.Outer", "base.proto"),
            ("a.Outer.x", "base.proto"),
            ("a.Outer.choice", "base.proto"),
            ("a.Outer.Inner", "base.proto"),
            ("a.Outer.Colour", "base.proto"),
            ("a.Outer.RED", "base.proto"),
            ("a.Mood", "base.proto"),
            ("a.HAPPY", "base.proto"),
            ("b.top", "ext.proto"),
            ("b.Holder.nested", "ext.proto"),
            ("b.Svc", "ext.proto"),
            ("b.Svc.Do", "ext.proto"),
        ] {
            let names = file_names(ask(&index, MessageRequest::FileContainingSymbol(symbol.into()), &mut Sent::new()));
            assert_eq!(names[0], file, "{symbol}");
        }
        for missing in ["a.Outer.Colour.RED", "a", "b.Svc.Nope", "Outer", ""] {
            let message = not_found(ask(&index, MessageRequest::FileContainingSymbol(missing.into()), &mut Sent::new()));
            assert!(message.contains(&format!("{missing:?}")), "{message}");
        }
    }

    #[test]
    fn a_stream_sends_each_dependency_once_and_the_asked_file_always() {
        let index = index();
        let mut sent = Sent::new();
        let ask_file = |name: &str, sent: &mut Sent| file_names(ask(&index, MessageRequest::FileByFilename(name.into()), sent));
        assert_eq!(ask_file("ext.proto", &mut sent), ["ext.proto", "base.proto"]);
        assert_eq!(ask_file("ext.proto", &mut sent), ["ext.proto"]);
        assert_eq!(ask_file("base.proto", &mut sent), ["base.proto"]);
        // A new stream starts afresh.
        assert_eq!(ask_file("ext.proto", &mut Sent::new()), ["ext.proto", "base.proto"]);
        not_found(ask(&index, MessageRequest::FileByFilename("nope.proto".into()), &mut sent));
    }

    #[test]
    fn extensions_are_found_by_type_and_number() {
        let index = index();
        let by_number = |number: i32| {
            ask(
                &index,
                MessageRequest::FileContainingExtension(ExtensionRequest {
                    containing_type: "a.Outer".into(),
                    extension_number: number,
                }),
                &mut Sent::new(),
            )
        };
        assert_eq!(file_names(by_number(100))[0], "ext.proto");
        assert_eq!(file_names(by_number(101))[0], "ext.proto");
        not_found(by_number(102));
        let numbers = |name: &str| ask(&index, MessageRequest::AllExtensionNumbersOfType(name.into()), &mut Sent::new());
        match numbers("a.Outer") {
            MessageResponse::AllExtensionNumbersResponse(r) => {
                assert_eq!(r.base_type_name, "a.Outer");
                assert_eq!(r.extension_number, [100, 101]);
            }
            other => panic!("{other:?}"),
        }
        // A known message without extensions has an empty list; what is no message is unknown.
        match numbers("b.Holder") {
            MessageResponse::AllExtensionNumbersResponse(r) => assert!(r.extension_number.is_empty()),
            other => panic!("{other:?}"),
        }
        not_found(numbers("a.Mood"));
        not_found(numbers("a.Nope"));
    }

    #[test]
    fn services_are_listed_with_or_without_descriptors() {
        match ask(&index(), MessageRequest::ListServices(String::new()), &mut Sent::new()) {
            MessageResponse::ListServicesResponse(list) => {
                let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
                assert_eq!(names, ["b.Svc", "x.HandBuilt"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_request_is_an_invalid_argument_and_garbage_a_build_error() {
        let response = index().answer(ServerReflectionRequest::default(), &mut Sent::new());
        match response.message_response.unwrap() {
            MessageResponse::ErrorResponse(e) => assert_eq!(e.error_code, Code::InvalidArgument.as_i32()),
            other => panic!("{other:?}"),
        }
        let garbage = [Bytes::from_static(b"\xff\xff")];
        let err = Index::build([("x.Bad", &garbage[..])]).err().expect("garbage refused");
        assert!(err.to_string().contains("x.Bad"), "{err}");
    }
}
