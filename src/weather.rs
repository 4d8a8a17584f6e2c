//! The demo's weather source for the portal: the simulated fleet's own weather model, so
//! the sky a system page shows is the sky its panels produced under.

use std::sync::Arc;

use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::Fleet;
use sunfleet_fixtures::pv::SystemModel;
use sunfleet_fixtures::weather::DayKind;
use sunfleet_portal::weather::{Site, Sky, Weather, WeatherSource};

pub struct SimulatedWeather {
    pub fleet: Arc<Fleet>,
}

impl WeatherSource for SimulatedWeather {
    fn weather(&self, site: Site, at_us: i64) -> Option<Weather> {
        // Generated systems have ids 1..=count; hand-entered sites are not in the model.
        let index = site.system_id.checked_sub(1)?;
        if index >= self.fleet.system_count() {
            return None;
        }
        let spec = self.fleet.system(index);
        let model = SystemModel::new(self.fleet.config().seed, &spec);
        let climate = model.climate();
        let seconds = at_us as f64 / 1e6;
        let sky = match climate.day_kind(climate.solar_day(seconds)) {
            DayKind::Clear => Sky::Clear,
            DayKind::PartlyCloudy => Sky::PartlyCloudy,
            DayKind::Overcast => Sky::Overcast,
        };
        let day_of_year = CivilDate::of_timestamp(at_us).ordinal();
        Some(Weather {
            sky,
            temperature_c: climate.air_temperature(seconds, day_of_year),
        })
    }
}
