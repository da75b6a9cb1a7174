// Drives ESP32-Paxcounter's own PayloadConvert (src/payload.cpp, compiled unchanged) the way
// src/senddata.cpp does for the counter port, and prints one JSON object per case.
// Built once per PAYLOAD_ENCODER / feature-flag combination by make_paxcounter_vectors.py.
#include "globals.h"
#include "payload.h"

static void emit(const char *name, int port) {
  printf("{\"case\":\"%s\",\"port\":%d,\"hex\":\"", name, port);
  uint8_t *b = payload.getBuffer();
  for (int i = 0; i < payload.getSize(); i++) printf("%02x", b[i]);
  printf("\"}\n");
}

// The COUNT_DATA branch of sendData() in src/senddata.cpp, in its order.
static void counts(const char *name, uint16_t wifi, uint16_t ble, bool blescan, bool gps,
                   bool sds) {
  payload.reset();
  gpsStatus_t g;
  g.latitude = 52520008;  // 52.520008 N (positive: the firmware casts to uint32 via double)
  g.longitude = 13404954; // 13.404954 E
  g.satellites = 7;
  g.hdop = 123;
  g.altitude = 34;
  sdsStatus_t s;
  s.pm10 = 12.5f;
  s.pm25 = 7.25f;
#if !(PAYLOAD_OPENSENSEBOX)
  payload.addCount(wifi, MAC_SNIFF_WIFI);
  if (blescan) payload.addCount(ble, MAC_SNIFF_BLE);
#endif
#if (HAS_GPS)
  if (gps) payload.addGPS(g);
#endif
#if (PAYLOAD_OPENSENSEBOX)
  payload.addCount(wifi, MAC_SNIFF_WIFI);
  if (blescan) payload.addCount(ble, MAC_SNIFF_BLE);
#endif
#if (HAS_SDS011)
  if (sds) payload.addSDS(s);
#endif
  (void)gps;
  (void)sds;
  emit(name, 1);
}

int main() {
  const uint16_t samples[][2] = {{0, 0}, {1, 0}, {42, 17}, {300, 1024}, {12345, 54321}, {65535, 65535}};
  char name[64];
  for (auto &v : samples) {
    snprintf(name, sizeof name, "wifi=%u", v[0]);
    counts(name, v[0], v[1], false, false, false);
    snprintf(name, sizeof name, "wifi=%u,ble=%u", v[0], v[1]);
    counts(name, v[0], v[1], true, false, false);
  }
#if (HAS_GPS)
  counts("wifi=42+gps", 42, 17, false, true, false);
  counts("wifi=42,ble=17+gps", 42, 17, true, true, false);
#endif
#if (HAS_SDS011)
  counts("wifi=42+sds", 42, 17, false, false, true);
  counts("wifi=42,ble=17+sds", 42, 17, true, false, true);
#endif
  // Housekeeping ports a profile receives but does not use: device status (STATUSPORT 2)
  // and battery voltage (BATTPORT 8), as the firmware encodes them.
  payload.reset();
  payload.addStatus(4120, 86400, 41.0f, 123456, 1, 3);
  emit("status", 2);
  payload.reset();
  payload.addVoltage(3987);
  emit("battery", 8);
  return 0;
}
