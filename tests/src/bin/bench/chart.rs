//! The PNG chart of docs/BENCHMARKS.md: one horizontal bar per case.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// Registers a system TrueType font for the labels, if one is found; the
/// chart is drawn without text otherwise.
fn font() -> bool {
    const CANDIDATES: [&str; 2] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ];
    for path in CANDIDATES {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

pub fn bars(path: &Path, title: &str, bars: &[(String, f64)]) -> Result<(), String> {
    let text = font();
    let height = 60 + 28 * bars.len() as u32;
    let root = BitMapBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(0.01) * 1.15;
    let n = bars.len() as i32;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(10);
    if text {
        builder
            .caption(title, ("sans-serif", 18))
            .x_label_area_size(30)
            .y_label_area_size(240);
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..max, (0..n).into_segmented())
        .map_err(|e| e.to_string())?;
    if text {
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(bars.len())
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => bars
                    .get((n - 1 - *i) as usize)
                    .map(|b| b.0.clone())
                    .unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .x_desc("µs per operation")
            .draw()
            .map_err(|e| e.to_string())?;
    }
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (label, value))| {
            let y = n - 1 - i as i32;
            let color = if label.starts_with("TK.") {
                RGBColor(31, 119, 180)
            } else {
                RGBColor(170, 170, 170)
            };
            Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(y)),
                    (*value, SegmentValue::Exact(y + 1)),
                ],
                color.filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
    if text {
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, value))| {
                let y = n - 1 - i as i32;
                Text::new(
                    format!(" {value:.2}"),
                    (*value, SegmentValue::CenterOf(y)),
                    ("sans-serif", 13),
                )
            }))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
