//! `/models/<fingerprint>`: every package for one frozen base model, so a
//! user who starts from a model sees what exists for it.

use askama::Template;
use axum::extract::{Path as UrlPath, Query, State};
use registry_index::Checksum;
use serde::Deserialize;

use super::{format, page, PackageRow, PageResult};
use crate::server::{ApiError, SharedState};

const PER_PAGE: u64 = 100;

#[derive(Debug, Deserialize)]
pub(crate) struct ModelQuery {
    page: Option<u64>,
}

#[derive(Template)]
#[template(path = "model.html")]
struct ModelPage {
    title: String,
    fingerprint: String,
    names: String,
    hidden_sizes: String,
    packages: String,
    rows: Vec<PackageRow>,
    next_page: Option<u64>,
    previous_page: Option<u64>,
    init_line: String,
}

pub(crate) async fn model(
    State(state): State<SharedState>,
    UrlPath(fingerprint): UrlPath<String>,
    Query(query): Query<ModelQuery>,
) -> PageResult {
    let fingerprint = Checksum::parse(&fingerprint).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let registry = &state.registry;
    let facts = registry
        .model_facts(&fingerprint)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no prompts for the base model {}", fingerprint.prefixed())))?;
    let page_number = query.page.unwrap_or(1).max(1);
    let (listed, more) =
        registry.packages_for_model(&fingerprint, (page_number - 1).saturating_mul(PER_PAGE), PER_PAGE).await?;
    let names = facts.names.join(", ");
    let template = ModelPage {
        title: format!("Prompts for {names}"),
        fingerprint: fingerprint.hex().to_string(),
        hidden_sizes: facts.hidden_sizes.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
        names,
        packages: format::thousands(facts.packages),
        rows: listed.iter().map(PackageRow::from_listed).collect(),
        next_page: more.then_some(page_number + 1),
        previous_page: (page_number > 1).then(|| page_number - 1),
        init_line: format!("attempt-pkg init --model-path DIR --model-fingerprint {}", fingerprint.prefixed()),
    };
    page(&template, state.config.auth_required)
}
