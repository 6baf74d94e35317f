//! SVG chart of a scale.sh sweep: throughput and p99 against workers, one
//! line per concurrency.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use plotters::prelude::*;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// CSV written by scripts/scale.sh (workers,concurrency,throughput,p99_ms,errors).
    #[arg(long)]
    pub csv: PathBuf,
    /// SVG to write.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn draw(args: &Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.csv)
        .with_context(|| format!("reading {}", args.csv.display()))?;
    // concurrency -> [(workers, throughput, p99)]
    let mut series: BTreeMap<u32, Vec<(u32, f64, f64)>> = BTreeMap::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        anyhow::ensure!(f.len() >= 4, "bad CSV line {line:?}");
        series.entry(f[1].parse()?).or_default().push((
            f[0].parse()?,
            f[2].parse()?,
            f[3].parse()?,
        ));
    }
    anyhow::ensure!(!series.is_empty(), "no data in {}", args.csv.display());
    let max_workers = series.values().flatten().map(|p| p.0).max().unwrap_or(1);
    let max_tp = series.values().flatten().map(|p| p.1).fold(1.0, f64::max);
    let max_p99 = series.values().flatten().map(|p| p.2).fold(1.0, f64::max);

    let root = SVGBackend::new(&args.out, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let mut tp = ChartBuilder::on(&left)
        .caption("verified requests/s", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(1u32..max_workers.max(2), 0.0..max_tp * 1.15)?;
    tp.configure_mesh().x_desc("workers").draw()?;
    let mut p99 = ChartBuilder::on(&right)
        .caption("end-to-end p99 (ms)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(1u32..max_workers.max(2), 0.0..max_p99 * 1.15)?;
    p99.configure_mesh().x_desc("workers").draw()?;
    for (i, (concurrency, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        tp.draw_series(LineSeries::new(
            points.iter().map(|p| (p.0, p.1)),
            color.stroke_width(2),
        ))?
        .label(format!("concurrency {concurrency}"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        p99.draw_series(LineSeries::new(
            points.iter().map(|p| (p.0, p.2)),
            color.stroke_width(2),
        ))?;
    }
    tp.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    println!("wrote {}", args.out.display());
    Ok(())
}
