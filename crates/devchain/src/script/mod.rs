//! Scripts, with no chain state: input script verification ([`verify`])
//! and Core's descriptor, type and assembly renderings ([`descriptor`]).

pub mod descriptor;
pub mod verify;
