//! Weather beside a system's figures (S1 side panel), when its settings turn it on. The
//! portal asks a [`WeatherSource`]; the demo plugs in the fleet simulator's own weather (so
//! the sky shown is the sky the panels saw), a deployment plugs in a provider's.

use std::fmt;

/// The sky over a site, in the three kinds a forecast shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sky {
    Clear,
    PartlyCloudy,
    Overcast,
}

impl Sky {
    pub fn label(self) -> &'static str {
        match self {
            Sky::Clear => "Clear",
            Sky::PartlyCloudy => "Partly cloudy",
            Sky::Overcast => "Overcast",
        }
    }
}

/// The weather at a site at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weather {
    pub sky: Sky,
    pub temperature_c: f64,
}

/// Where to ask about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Site {
    pub system_id: u32,
    pub latitude: f64,
    pub longitude: f64,
}

/// A source of current weather. `None`: it has nothing for that site now.
pub trait WeatherSource: Send + Sync {
    fn weather(&self, site: Site, at_us: i64) -> Option<Weather>;
}

/// A source, as the portal's configuration holds it.
#[derive(Clone)]
pub struct SharedWeather(pub std::sync::Arc<dyn WeatherSource>);

impl fmt::Debug for SharedWeather {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeatherSource")
    }
}
