//! Closed registries of component kinds, selected by a `type` key.
//!
//! Sources, steps and sinks are each one closed enum (`SourceConfig`, `StepConfig`,
//! `SinkConfig`), one variant per kind. [`component_kinds!`](crate::component_kinds) declares such
//! an enum from `Variant(ConfigStruct) = "tag"` lines and implements [`ComponentKind`] for it, so
//! adding a component is its own file plus one line here, and the compiler checks every `match`.
//!
//! Why not only serde's `#[serde(tag = "type")]`: internally tagged enums buffer their input, which
//! loses the path of the key at fault inside the component. The config loader instead reads `type`
//! itself and calls [`ComponentKind::deserialize_kind`], which deserializes the variant's struct
//! directly and reports the full key path (`steps[1].pattern`), so errors can point at a line.

/// Re-exported for the macro's expansion in other crates.
#[doc(hidden)]
pub use serde_path_to_error as __path_to_error;

/// A closed set of component kinds selected by the `type` key.
pub trait ComponentKind: Sized {
    /// Every accepted `type` value.
    const KINDS: &'static [&'static str];

    /// The `type` value of this component.
    fn kind(&self) -> &'static str;

    /// Deserializes the config of kind `kind` from a table without its `type` key.
    ///
    /// # Errors
    /// [`KindError::UnknownKind`] when `kind` is not one of [`Self::KINDS`]; [`KindError::Field`]
    /// with the key path when the table does not fit the kind's config.
    fn deserialize_kind<'de, D: serde::Deserializer<'de>>(
        kind: &str,
        deserializer: D,
    ) -> Result<Self, KindError<D::Error>>;
}

/// Why a component config could not be deserialized.
#[derive(Debug)]
pub enum KindError<E> {
    /// The `type` names no known kind.
    UnknownKind,
    /// A key inside the component is wrong; the error carries its path.
    Field(serde_path_to_error::Error<E>),
}

/// Declares a closed enum of component configs and implements [`ComponentKind`] for it.
///
/// ```ignore
/// component_kinds! {
///     /// Every step kind.
///     pub enum StepConfig {
///         /// Parse raw lines.
///         Parse(ParseConfig) = "parse",
///     }
/// }
/// ```
#[macro_export]
macro_rules! component_kinds {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident($config:ty) = $tag:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(tag = "type")]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $tag)] $variant($config), )*
        }

        impl $crate::registry::ComponentKind for $name {
            const KINDS: &'static [&'static str] = &[$($tag),*];

            fn kind(&self) -> &'static str {
                match *self {
                    $( $name::$variant(_) => $tag, )*
                }
            }

            fn deserialize_kind<'de, D: serde::Deserializer<'de>>(
                kind: &str,
                deserializer: D,
            ) -> Result<Self, $crate::registry::KindError<D::Error>> {
                let _ = &deserializer;
                match kind {
                    $( $tag => $crate::registry::__path_to_error::deserialize::<_, $config>(deserializer)
                        .map($name::$variant)
                        .map_err($crate::registry::KindError::Field), )*
                    _ => Err($crate::registry::KindError::UnknownKind),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct AConfig {
        size: u32,
    }

    #[derive(Debug, Clone, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct BConfig {
        inner: Vec<AConfig>,
    }

    component_kinds! {
        /// Test kinds.
        // The variants' configs are only matched on, never read.
        #[allow(dead_code)]
        enum TestKinds {
            /// A.
            A(AConfig) = "a",
            /// B.
            B(BConfig) = "b",
        }
    }

    #[test]
    fn dispatches_on_kind_and_reports_paths() {
        assert_eq!(TestKinds::KINDS, ["a", "b"]);
        let table: toml::Table = toml::from_str("size = 3").unwrap();
        let parsed = TestKinds::deserialize_kind("a", toml::Value::Table(table)).unwrap();
        assert_eq!(parsed.kind(), "a");

        let table: toml::Table =
            toml::from_str("inner = [{ size = 1 }, { size = \"x\" }]").unwrap();
        let Err(KindError::Field(error)) =
            TestKinds::deserialize_kind("b", toml::Value::Table(table))
        else {
            panic!("expected a field error");
        };
        assert_eq!(error.path().to_string(), "inner[1].size");

        let table = toml::Table::new();
        assert!(matches!(
            TestKinds::deserialize_kind("zzz", toml::Value::Table(table)),
            Err(KindError::UnknownKind)
        ));
    }

    #[test]
    fn serde_tagged_form_still_works() {
        let parsed: TestKinds = toml::from_str("type = \"a\"\nsize = 2").unwrap();
        assert!(matches!(parsed, TestKinds::A(AConfig { size: 2 })));
    }
}
