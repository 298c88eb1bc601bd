//! Downstream evaluation, the paper's stage 4: labelled data sets, classification metrics as
//! scikit-learn computes them, and the protocols that train a classifier on an encoder.

pub mod dataset;
pub mod embed;
pub mod encoder;
pub mod finetune;
pub mod metrics;
pub mod probe;
pub mod report;
