//! The whole pipeline in this process with the real models on CPU: remember 20 paragraphs,
//! then ask 10 questions each answered in one paragraph; that paragraph must be the top
//! citation, and the answer must contain the gold answer for at least 8 of 10.

use super::common;

use memgpt_proto::gateway::v1 as gw;

const PARAGRAPHS: [(&str, &str); 20] = [
    ("bridge", "The Glimmerfjord Bridge in Norway was designed by the engineer Marta Solberg and opened to traffic in 1987."),
    ("volcano", "Mount Kelvara is a volcano on the island of Tessa. Its last eruption happened in the year 1911."),
    ("coffee", "The Blue Finch cafe in Lisbon is famous for its cardamom coffee, which it has served since 1952."),
    ("river", "The Orvane River flows for 412 kilometres and empties into the Caspian Sea near the town of Belmir."),
    ("composer", "The composer Ilse Varga wrote the opera The Glass Harbour, which premiered in Vienna in 1923."),
    ("robot", "The warehouse robot named Pico can lift loads of up to 80 kilograms and runs on a lithium battery."),
    ("island", "The island of Marrow Cay has a population of about 900 people, most of whom work in fishing."),
    ("festival", "The Lantern Festival of Quillon takes place every October and lasts for exactly nine days."),
    ("telescope", "The Hartwell Telescope sits on a mountain in Chile and has a mirror 6.5 metres wide."),
    ("language", "The official language of the fictional country of Valdoria is Esperanto, chosen by its founders in 1960."),
    ("bakery", "Rosa's Bakery in Turin bakes over two thousand loaves of bread every morning before sunrise."),
    ("library", "The Alder Street Library holds a rare collection of maps from the sixteenth century."),
    ("train", "The Nordic Arrow train travels between Oslo and Stockholm in about six hours."),
    ("garden", "The Kestrel Botanical Garden grows more than three hundred kinds of orchids in its glasshouses."),
    ("satellite", "The weather satellite Aurora-3 was launched in 2019 and orbits the Earth every 98 minutes."),
    ("museum", "The Museum of Small Things displays a collection of tiny sculptures carved from rice grains."),
    ("lake", "Lake Sorrel freezes every winter, and people skate across its surface from December to March."),
    ("chef", "The chef Tomas Ilves won the national cooking prize in 2015 with a soup made from wild mushrooms."),
    ("stadium", "The Harbour Stadium has seats for forty thousand people and hosts football matches every weekend."),
    ("forest", "The Greywood Forest is home to a rare owl called the silver-eyed owl, which hunts at dawn."),
];

const QUESTIONS: [(&str, &str, &str); 10] = [
    ("Who designed the Glimmerfjord Bridge?", "bridge", "Marta Solberg"),
    ("In which year did Mount Kelvara last erupt?", "volcano", "1911"),
    ("Which sea does the Orvane River empty into?", "river", "Caspian"),
    ("Who wrote the opera The Glass Harbour?", "composer", "Ilse Varga"),
    ("How many kilograms can the robot Pico lift?", "robot", "80"),
    ("How many days does the Lantern Festival of Quillon last?", "festival", "nine"),
    ("What is the official language of Valdoria?", "language", "Esperanto"),
    ("Which cities does the Nordic Arrow train connect?", "train", "Oslo"),
    ("In which year was the satellite Aurora-3 launched?", "satellite", "2019"),
    ("What rare bird lives in the Greywood Forest?", "forest", "owl"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remembered_paragraphs_answer_questions_with_citations() {
    let dir = tempfile::tempdir().unwrap();
    let memory = common::memory(dir.path());
    let generator = common::generator();
    common::serving(memory.addr, "memgpt.memory.v1.Memory").await;
    common::serving(generator.addr, "memgpt.generator.v1.Generator").await;
    let gateway = common::gateway(&[memory.addr], &[generator.addr], &["--no-auth"]);
    let mut client = common::gateway_client(gateway.addr).await;

    let documents = PARAGRAPHS.iter().map(|(id, text)| gw::Document { id: id.to_string(), text: text.to_string(), metadata: Default::default(), ..Default::default() }).collect();
    let stored = client.remember(gw::RememberRequest { namespace: "kb".into(), documents, warm: false, ..Default::default() }).await.unwrap().into_inner();
    assert!(stored.results.iter().all(|r| r.status == gw::DocumentStatus::Stored as i32 && r.chunks == 1), "{stored:?}");

    let mut correct = Vec::new();
    for (question, doc, gold) in QUESTIONS {
        let req = gw::AskRequest {
            question: question.into(),
            namespaces: vec!["kb".into()],
            top_k: Some(3),
            params: Some(memgpt_proto::generator::v1::SamplingParams { max_new_tokens: Some(32), temperature: Some(0.0), ..Default::default() }),
            ..Default::default()
        };
        let answer = client.ask(req).await.unwrap().into_inner();
        assert_eq!(answer.citations[0].document_id, doc, "{question}: top citation {:?}", answer.citations[0]);
        assert_eq!(answer.trace_id.len(), 32);
        let timings = answer.timings.unwrap();
        assert!(timings.encode_ms > 0.0 && timings.retrieve_ms > 0.0 && timings.generate_ms > 0.0 && timings.total_ms >= timings.generate_ms);
        assert!(answer.citations.iter().all(|c| (0.0..=1.0).contains(&c.attention)));
        eprintln!("{question} -> {:?}", answer.answer);
        if answer.answer.to_lowercase().contains(&gold.to_lowercase()) {
            correct.push(question);
        }
    }
    // The stages and calls are in the Prometheus metrics (this process's registry, shared
    // with the other tests of this binary, so only their presence is checked).
    let metrics = memgpt_telemetry::metrics::render();
    for needle in [
        "memgpt_gateway_stage_seconds_count{stage=\"generate\"} ",
        "memgpt_grpc_requests_total{method=\"/memgpt.gateway.v1.Gateway/Ask\",code=\"0\"} ",
        "memgpt_grpc_requests_total{method=\"/memgpt.memory.v1.Memory/Search\",code=\"0\"} ",
        "memgpt_generator_tokens_generated_total",
        "memgpt_generator_ttft_seconds_count ",
    ] {
        assert!(metrics.contains(needle), "no `{needle}` in\n{metrics}");
    }
    assert!(correct.len() >= 8, "only {} of 10 answers hold the gold answer: {correct:?}", correct.len());
}
