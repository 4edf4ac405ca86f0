//! `faiss_encode(json) -> BLOB` and `faiss_decode(blob) -> TEXT` (SPEC §1). Both accept either
//! vector form, so each also validates and normalises.

use crate::error::Result;
use crate::json;
use crate::sqlite::{Context, Output, ValueRef};
use crate::vector;

pub(crate) fn encode(_: &Context, args: &[ValueRef]) -> Result<Output> {
    let v = vector::parse(args[0].cell())?;
    Ok(Output::Blob(vector::encode(&v)))
}

pub(crate) fn decode(_: &Context, args: &[ValueRef]) -> Result<Output> {
    let v = vector::parse(args[0].cell())?;
    Ok(Output::Text(json::floats(&v)))
}
