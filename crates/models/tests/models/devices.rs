//! Random-weight models of real shapes, and CPU against CUDA on the same weights. The CUDA
//! tests are `#[ignore]`d (CI has no GPU); on a CUDA machine run them with
//! `cargo test --release -p memgpt-models --test devices -- --ignored`.

use memgpt_models::device::parse_device;
use memgpt_models::llama::kv::KvCache;
use memgpt_models::llama::{Llama, LlamaConfig};
use memgpt_models::llama::ragged::SeqStep;
use tch::{Device, Kind, Tensor};

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_device(Device::Cpu).to_kind(Kind::Double), b.to_device(Device::Cpu).to_kind(Kind::Double));
    (&a - &b).abs().max().double_value(&[]) / a.abs().max().double_value(&[])
}

#[test]
fn presets_have_the_published_parameter_counts() {
    // SmolLM2-135M: 134,515,008 parameters (tied head); Llama-3-8B: 8,030,261,248.
    assert_eq!(LlamaConfig::preset("smollm2-135m").unwrap().parameters(), 134_515_008);
    assert_eq!(LlamaConfig::preset("llama3-8b").unwrap().parameters(), 8_030_261_248);
    let err = LlamaConfig::preset("gpt-5").unwrap_err().to_string();
    assert!(err.contains("shape") && err.contains("gpt-5") && err.contains("llama3-8b"), "{err}");
}

#[test]
fn the_smollm2_preset_is_the_shape_of_the_real_model() {
    let dir = memgpt_models::models_dir(std::env::var_os("MEMGPT_MODELS_DIR").map(std::path::PathBuf::from));
    let real = memgpt_models::llama::decoder::Decoder::load(&dir.join(memgpt_models::DEFAULT_DECODER), Device::Cpu, Kind::Float).unwrap().model.config;
    let preset = LlamaConfig::preset("smollm2-135m").unwrap();
    // GGUF stores the epsilon as f32.
    assert!((preset.rms_eps - real.rms_eps).abs() < 1e-9);
    assert_eq!(LlamaConfig { context_length: real.context_length, rms_eps: real.rms_eps, ..preset }, real);
    assert_eq!(real.parameters(), 134_515_008);
}

#[test]
fn a_random_model_is_seeded_and_survives_a_copy() {
    let _guard = tch::no_grad_guard();
    let config = LlamaConfig::preset("tiny").unwrap();
    let a = Llama::random(config.clone(), Device::Cpu, Kind::Float, 7);
    let b = Llama::random(config.clone(), Device::Cpu, Kind::Float, 7);
    let c = a.to_device(Device::Cpu, Kind::Float);
    let p = vec![config.synthetic_prompt(12)];
    let (out_a, first_a) = a.greedy_batch(&p, 8, &[]).unwrap();
    let (out_b, first_b) = b.greedy_batch(&p, 8, &[]).unwrap();
    let (out_c, first_c) = c.greedy_batch(&p, 8, &[]).unwrap();
    assert_eq!(out_a, out_b);
    assert_eq!(out_a, out_c);
    assert_eq!(out_a[0].len(), 8);
    assert_eq!(rel_err(&first_a, &first_b), 0.0);
    assert_eq!(rel_err(&first_a, &first_c), 0.0);
    // A different seed is a different model.
    let d = Llama::random(config, Device::Cpu, Kind::Float, 8);
    assert!(rel_err(&first_a, &d.greedy_batch(&p, 1, &[]).unwrap().1) > 0.1);
}

#[test]
fn asking_for_a_missing_cuda_device_is_an_error_naming_the_device() {
    let err = parse_device("cuda:64").unwrap_err().to_string();
    assert!(err.contains("device") && err.contains("cuda:64"), "{err}");
    let err = parse_device("tpu").unwrap_err().to_string();
    assert!(err.contains("`tpu`"), "{err}");
}

fn cuda() -> Device {
    let device = parse_device("cuda").expect("a CUDA device");
    assert!(tch::Cuda::is_available());
    device
}

#[test]
#[ignore = "needs a CUDA device"]
fn cpu_and_cuda_agree_on_a_small_random_model() {
    let _guard = tch::no_grad_guard();
    let gpu = cuda();
    for shape in ["tiny", "smollm2-135m"] {
        let config = LlamaConfig::preset(shape).unwrap();
        let cpu = Llama::random(config.clone(), Device::Cpu, Kind::Float, 11);
        let prompts = vec![config.synthetic_prompt(40), config.synthetic_prompt(25)];
        let (out_cpu, first_cpu) = cpu.greedy_batch(&prompts, 16, &[]).unwrap();
        // f32 on CUDA: the same greedy tokens, logits within 1e-3 of their range.
        let f32_gpu = cpu.to_device(gpu, Kind::Float);
        let (out_gpu, first_gpu) = f32_gpu.greedy_batch(&prompts, 16, &[]).unwrap();
        let err = rel_err(&first_cpu, &first_gpu);
        println!("{shape}: f32 cuda vs cpu first-step logits, max error / max |logit| = {err:.2e}");
        assert!(err < 1e-3, "{shape}: {err}");
        assert_eq!(out_cpu, out_gpu, "{shape}: greedy tokens differ between CPU and CUDA (f32)");
        // bf16 on CUDA (the serving dtype): logits within 5% of their range.
        let bf16_gpu = cpu.to_device(gpu, Kind::BFloat16);
        let (_, first_bf16) = bf16_gpu.greedy_batch(&prompts, 1, &[]).unwrap();
        let err = rel_err(&first_cpu, &first_bf16);
        println!("{shape}: bf16 cuda vs f32 cpu first-step logits, max error / max |logit| = {err:.2e}");
        assert!(err < 5e-2, "{shape}: {err}");
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn the_ragged_step_on_cuda_matches_the_plain_forward() {
    let _guard = tch::no_grad_guard();
    let gpu = cuda();
    let config = LlamaConfig::preset("tiny").unwrap();
    let model = Llama::random(config.clone(), gpu, Kind::Float, 5);
    let (a, b) = (config.synthetic_prompt(9), config.synthetic_prompt(17));
    let alone = |tokens: &[u32]| {
        let mut cache = model.new_cache(1, 32);
        let ids = Tensor::from_slice(&tokens.iter().map(|&t| t as i64).collect::<Vec<_>>()).view([1, -1]).to_device(gpu);
        let pos = Tensor::arange(tokens.len() as i64, (Kind::Int64, gpu)).view([1, -1]);
        model.forward(&ids, &pos, &mut cache, None).unwrap().get(0)
    };
    let kv = || KvCache::uninit(config.n_layer, 1, config.n_head_kv, 32, config.head_dim, Kind::Float, gpu);
    let (mut ka, mut kb) = (kv(), kv());
    let mut step = [
        SeqStep::new(&a, &mut ka),
        SeqStep::new(&b, &mut kb),
    ];
    let out = model.forward_ragged(&mut step, 1).unwrap();
    let err_a = rel_err(&alone(&a), &out.logits.get(0));
    let err_b = rel_err(&alone(&b), &out.logits.get(1));
    println!("ragged vs plain on cuda: {err_a:.2e}, {err_b:.2e}");
    assert!(err_a < 1e-4 && err_b < 1e-4, "{err_a} {err_b}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn calibrated_attention_on_cuda_matches_the_cpu() {
    let _guard = tch::no_grad_guard();
    let gpu = cuda();
    let config = LlamaConfig::preset("smollm2-135m").unwrap();
    let cpu = Llama::random(config.clone(), Device::Cpu, Kind::Float, 13);
    let (prompt, question) = (config.synthetic_prompt(48), config.synthetic_prompt(9));
    let calibrate = Some(memgpt_models::llama::ragged::Calibrate { keys: (4, 48), from: 48, temperature: 1.3, scale: 0.7 });
    let logits = |model: &Llama, kind: Kind| {
        let mut cache = KvCache::uninit(config.n_layer, 1, config.n_head_kv, 64, config.head_dim, kind, model.device);
        model.forward_ragged(&mut [SeqStep::new(&prompt, &mut cache)], 1).unwrap();
        let mut step = [SeqStep { calibrate, ..SeqStep::new(&question, &mut cache) }];
        let first = model.forward_ragged(&mut step, 1).unwrap().logits.get(0);
        // A decode step, calibrated too.
        let mut step = [SeqStep { calibrate, ..SeqStep::new(&question[..1], &mut cache) }];
        (first, model.forward_ragged(&mut step, 1).unwrap().logits.get(0))
    };
    let (first_cpu, next_cpu) = logits(&cpu, Kind::Float);
    let (first_gpu, next_gpu) = logits(&cpu.to_device(gpu, Kind::Float), Kind::Float);
    let (a, b) = (rel_err(&first_cpu, &first_gpu), rel_err(&next_cpu, &next_gpu));
    println!("calibrated attention, f32 cuda vs cpu: question {a:.2e}, decode step {b:.2e}");
    assert!(a < 1e-3 && b < 1e-3, "{a} {b}");
    let (first_bf16, _) = logits(&cpu.to_device(gpu, Kind::BFloat16), Kind::BFloat16);
    let c = rel_err(&first_cpu, &first_bf16);
    println!("calibrated attention, bf16 cuda vs f32 cpu: {c:.2e}");
    assert!(c < 5e-2, "{c}");
}
