//! `load_model` picks the architecture from config.json and returns a working
//! `Encoder` for each supported family.

use std::path::Path;

use attempt_pkg::model::{load_model, AnyModel};
use candle_core::{DType, Device, Tensor};

fn encode_shape(dir: &str) -> (Vec<usize>, bool) {
    let loaded = load_model(Path::new(dir), &Device::Cpu).expect("fixture loads");
    let enc = loaded.model.encoder();
    let ids = Tensor::new(&[[1u32, 2, 3], [4, 5, 0]], &Device::Cpu).unwrap();
    let mask = Tensor::new(&[[1f32, 1., 1.], [1., 1., 0.]], &Device::Cpu).unwrap();
    let embeds = enc.embed_tokens(&ids).unwrap();
    let hidden = enc.encode(&embeds, &mask).unwrap();
    assert_eq!(hidden.dtype(), DType::F32);
    let finite = hidden.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|v| v.is_finite());
    assert_eq!(hidden.dims()[2], enc.hidden_size());
    (hidden.dims().to_vec(), finite && matches!(loaded.model, AnyModel::T5(_)))
}

#[test]
fn t5_fixtures_load_through_the_dispatcher() {
    for dir in ["tests/fixtures/t5/v1_0", "tests/fixtures/t5/v1_1"] {
        let (dims, finite_t5) = encode_shape(dir);
        assert_eq!(dims, vec![2, 3, 32], "{dir}");
        assert!(finite_t5, "{dir}: expected a T5 model with finite outputs");
    }
}
