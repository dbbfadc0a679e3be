// TEMPORARY compile placeholder; replaced by the real module.
use std::borrow::Cow;
pub struct FilterSet;
impl FilterSet {
    pub fn parse<S: AsRef<str>>(_f: &[S]) -> Result<FilterSet, ParseError> { Ok(FilterSet) }
    pub fn matches<A: Adaptor + ?Sized>(&self, _t: &A) -> bool { true }
}
pub trait Adaptor { fn field(&self, path: &[String]) -> Option<Cow<'_, str>>; }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError;
impl std::fmt::Display for ParseError { fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result { write!(f, "x") } }
