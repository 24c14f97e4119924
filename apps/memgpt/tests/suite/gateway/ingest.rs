//! Documents as files: a PDF's text layer a section per page, HTML's main text without
//! scripts and navigation, Markdown's sections with their heading paths; and through
//! Remember, a file that cannot be read failing alone, named, while the others are stored.

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream};
use memgpt_gateway::ingest::{self, Format};
use memgpt_proto::gateway::v1 as gw;
use tonic::Code;

use super::api::{count, gateway};
use super::common;

/// A PDF of one text line per page (Helvetica), written with lopdf.
fn pdf(pages: &[&str]) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"});
    let resources = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font}});
    let kids: Vec<Object> = pages
        .iter()
        .map(|text| {
            let ops = vec![
                Operation::new("BT", vec![]),
                Operation::new("Tf", vec!["F1".into(), 12.into()]),
                Operation::new("Td", vec![72.into(), 720.into()]),
                Operation::new("Tj", vec![Object::string_literal(*text)]),
                Operation::new("ET", vec![]),
            ];
            let content = doc.add_object(Stream::new(dictionary! {}, Content { operations: ops }.encode().unwrap()));
            doc.add_object(dictionary! {"Type" => "Page", "Parent" => pages_id, "Contents" => content, "Resources" => resources, "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()]}).into()
        })
        .collect();
    let count = kids.len() as i64;
    doc.objects.insert(pages_id, Object::Dictionary(dictionary! {"Type" => "Pages", "Kids" => kids, "Count" => count}));
    let catalog = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

fn meta<'a>(section: &'a ingest::Section, key: &str) -> Option<&'a str> {
    section.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn a_pdf_is_read_a_page_a_section() {
    let bytes = pdf(&["Berth maintenance.", "New cranes on the quay.", "The lamp was automated in 1987."]);
    assert_eq!(ingest::sniff(&bytes), Format::Pdf);
    let read = ingest::extract(&bytes, Format::Pdf).unwrap();
    let pages: Vec<(&str, &str)> = read.sections.iter().map(|s| (meta(s, "page").unwrap(), s.text.as_str())).collect();
    assert_eq!(pages, [("1", "Berth maintenance."), ("2", "New cranes on the quay."), ("3", "The lamp was automated in 1987.")]);
    assert!(read.metadata.contains(&("pages".into(), "3".into())) && read.metadata.contains(&("format".into(), "pdf".into())));

    let err = ingest::extract(b"%PDF-1.5 this is not really a PDF", Format::Pdf).unwrap_err();
    assert!(err.starts_with("unreadable PDF"), "{err}");
    assert_eq!(ingest::extract(b"plain words", Format::Pdf).unwrap_err(), "not a PDF (no `%PDF-` header)");
    let err = ingest::extract(&pdf(&[""]), Format::Pdf).unwrap_err();
    assert!(err.contains("no text layer"), "{err}");
}

#[test]
fn html_keeps_the_main_text_title_and_headings() {
    let page = r#"<!DOCTYPE html><html><head><title> Linford  Museum </title><script>var x = "<p>SCRIPT</p>";</script></head>
        <body><header>HEADER</header><nav><ul><li>NAV</li></ul></nav><aside>ASIDE</aside>
        <main><h1>Visiting</h1><p>Open daily &amp; free.</p><h2>Hours</h2><p>Nine to five.</p><h2>Prices</h2><p>Four pounds.</p>
        <form><button>SUBMIT</button></form></main><footer>FOOTER</footer></body></html>"#;
    assert_eq!(ingest::sniff(page.as_bytes()), Format::Html);
    let read = ingest::extract(page.as_bytes(), Format::Html).unwrap();
    let sections: Vec<(Option<&str>, &str)> = read.sections.iter().map(|s| (meta(s, "heading"), s.text.as_str())).collect();
    assert_eq!(
        sections,
        [(Some("Visiting"), "Visiting\n\nOpen daily & free."), (Some("Visiting > Hours"), "Hours\n\nNine to five."), (Some("Visiting > Prices"), "Prices\n\nFour pounds.")]
    );
    assert!(read.metadata.contains(&("title".into(), "Linford Museum".into())), "{:?}", read.metadata);
    // Without <main>, the body less its navigation, header, footer and scripts.
    let bare = "<html><body><nav>NAV</nav><p>Only this.</p><script>SCRIPT</script><noscript>NOSCRIPT</noscript></body></html>";
    let read = ingest::extract(bare.as_bytes(), Format::Html).unwrap();
    assert_eq!(read.sections.iter().map(|s| s.text.as_str()).collect::<Vec<_>>(), ["Only this."]);
    assert!(ingest::extract(b"<html><body><nav>only navigation</nav></body></html>", Format::Html).unwrap_err().contains("holds no text"));
}

#[test]
fn markdown_sections_carry_their_heading_path() {
    let md = "---\ntitle: hidden front matter\n---\nIntro line.\n\n# Install\n\nRun the *installer*.\n\n## Linux\n\n- apt install memgpt\n- or `cargo install`\n\n## macOS\n\nUse brew.\n\n# Use\n\nAsk questions.\n";
    let read = ingest::extract(md.as_bytes(), Format::Markdown).unwrap();
    let sections: Vec<(Option<&str>, &str)> = read.sections.iter().map(|s| (meta(s, "heading"), s.text.as_str())).collect();
    assert_eq!(
        sections,
        [
            (None, "Intro line."),
            (Some("Install"), "Install\n\nRun the installer."),
            (Some("Install > Linux"), "Linux\n\n- apt install memgpt\n- or cargo install"),
            (Some("Install > macOS"), "macOS\n\nUse brew."),
            (Some("Use"), "Use\n\nAsk questions."),
        ]
    );
    assert_eq!(ingest::media_type("Text/Markdown; charset=utf-8"), Some(Format::Markdown));
    assert_eq!(ingest::media_type("image/png"), None);
    assert_eq!(ingest::extension("PDF"), Some("application/pdf"));
    assert!(ingest::extract(&[0xff, 0xfe, b'a'], Format::Markdown).unwrap_err().starts_with("not UTF-8 markdown"));
}

fn file(id: &str, content: Vec<u8>, media_type: &str) -> gw::Document {
    gw::Document { id: id.into(), content, media_type: media_type.into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_that_cannot_be_read_fails_alone() {
    let mut c = common::gateway_client(gateway(&["--no-auth"])).await;
    let documents = vec![
        file("guide", b"# Guide\n\n## Ferries\n\nThe ferry to Skerry leaves at noon.".to_vec(), "text/markdown"),
        file("broken", b"%PDF-1.4 truncated".to_vec(), "application/pdf"),
        file("report", pdf(&["Cover page.", "The lamp was automated in 1987."]), ""),
    ];
    let out = c.remember(gw::RememberRequest { namespace: "files".into(), documents, ..Default::default() }).await.unwrap().into_inner();
    let results: Vec<(&str, i32, u32)> = out.results.iter().map(|r| (r.document_id.as_str(), r.status, r.chunks)).collect();
    let (stored, failed) = (gw::DocumentStatus::Stored as i32, gw::DocumentStatus::Failed as i32);
    assert_eq!(results, [("guide", stored, 1), ("broken", failed, 0), ("report", stored, 2)], "{out:?}");
    assert!(out.results[1].error.starts_with("unreadable PDF"), "{out:?}");
    assert_eq!(count("files").await, 3);

    let search = |q: &str| gw::SearchRequest { question: q.into(), namespaces: vec!["files".into()], top_k: Some(1), ..Default::default() };
    let hit = c.search(search("When does the ferry leave?")).await.unwrap().into_inner().citations.remove(0);
    assert_eq!((hit.document_id.as_str(), hit.metadata["heading"].as_str(), hit.metadata["format"].as_str()), ("guide", "Guide > Ferries", "markdown"));
    let hit = c.search(search("When was the lamp automated?")).await.unwrap().into_inner().citations.remove(0);
    assert_eq!((hit.memory_id.as_str(), hit.metadata["page"].as_str()), ("report#1", "2"), "{hit:?}");

    // Text and content together, or a media type the gateway cannot read: the request fails
    // whole, naming the field, and nothing is stored.
    let both = gw::Document { text: "words".into(), ..file("both", b"more words".to_vec(), "") };
    let unknown = file("image", vec![1, 2, 3], "image/png");
    for (doc, field) in [(both, "documents[0].content"), (unknown, "documents[0].media_type")] {
        let status = c.remember(gw::RememberRequest { namespace: "files-bad".into(), documents: vec![doc], ..Default::default() }).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{status:?}");
    }
    assert_eq!(count("files-bad").await, 0);
}
