pub mod rms_norm;
