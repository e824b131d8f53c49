//! The route guide's features: loading `route_guide/route_guide_db.json` (the same file
//! the Python peer in tests/peers/python reads), and the geometry both servers agree on.

use crate::proto::routeguide::{Feature, Point, Rectangle};

/// The database the examples ship.
pub const DEFAULT_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/route_guide/route_guide_db.json"
);

/// Reads a JSON array of `{"location": {"latitude": .., "longitude": ..}, "name": ".."}`.
pub fn load(path: &str) -> Result<Vec<Feature>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the feature database {path}: {e}"))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{path} is not valid JSON: {e}"))?;
    let entries = json
        .as_array()
        .ok_or_else(|| format!("{path}: expected a JSON array of features"))?;
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let bad = || format!("{path}: feature {i} is not {{\"location\": {{\"latitude\": N, \"longitude\": N}}, \"name\": S}}");
            let location = entry.get("location").ok_or_else(bad)?;
            let coordinate = |key: &str| {
                location.get(key).and_then(serde_json::Value::as_i64).and_then(|v| i32::try_from(v).ok()).ok_or_else(bad)
            };
            Ok(Feature {
                name: entry.get("name").and_then(serde_json::Value::as_str).ok_or_else(bad)?.to_string(),
                location: Some(Point {
                    latitude: coordinate("latitude")?,
                    longitude: coordinate("longitude")?,
                }),
            })
        })
        .collect()
}

/// Whether `point` lies inside `rect` (corners in any order, edges included).
pub fn in_range(point: &Point, rect: &Rectangle) -> bool {
    let (lo, hi) = (rect.lo.unwrap_or_default(), rect.hi.unwrap_or_default());
    let (left, right) = (
        lo.longitude.min(hi.longitude),
        lo.longitude.max(hi.longitude),
    );
    let (bottom, top) = (lo.latitude.min(hi.latitude), lo.latitude.max(hi.latitude));
    (left..=right).contains(&point.longitude) && (bottom..=top).contains(&point.latitude)
}

/// The great-circle distance between two points in metres (haversine), truncated, as the
/// standard route guide computes it.
pub fn distance(a: &Point, b: &Point) -> i32 {
    const COORD_FACTOR: f64 = 1e7;
    const EARTH_RADIUS_M: f64 = 6_371_000.0;
    let lat1 = (a.latitude as f64 / COORD_FACTOR).to_radians();
    let lat2 = (b.latitude as f64 / COORD_FACTOR).to_radians();
    let dlat = lat2 - lat1;
    let dlon = ((b.longitude as f64 - a.longitude as f64) / COORD_FACTOR).to_radians();
    let (s_lat, s_lon) = ((dlat / 2.0).sin(), (dlon / 2.0).sin());
    let h = s_lat * s_lat + lat1.cos() * lat2.cos() * s_lon * s_lon;
    let c = 2.0 * h.sqrt().atan2((1.0 - h).sqrt());
    (EARTH_RADIUS_M * c) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_database_loads() {
        let features = load(DEFAULT_PATH).unwrap();
        assert_eq!(features.len(), 40);
        assert!(features.iter().filter(|f| f.name.is_empty()).count() > 0);
    }

    #[test]
    fn geometry() {
        let p = |latitude, longitude| Point {
            latitude,
            longitude,
        };
        let rect = Rectangle {
            lo: Some(p(10, 20)),
            hi: Some(p(0, 0)),
        };
        assert!(in_range(&p(5, 5), &rect));
        assert!(!in_range(&p(11, 5), &rect));
        assert_eq!(distance(&p(0, 0), &p(0, 0)), 0);
        // One degree of latitude is about 111 km.
        assert_eq!(distance(&p(0, 0), &p(10_000_000, 0)) / 1000, 111);
    }
}
