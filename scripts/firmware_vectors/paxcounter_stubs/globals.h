// Host-side stand-in for ESP32-Paxcounter's include/globals.h: only what src/payload.cpp needs,
// so the firmware's own PayloadConvert compiles on a PC. Struct layouts follow the firmware's
// include/globals.h (configData_t, gpsStatus_t, bmeStatus_t, sdsStatus_t).
#ifndef _GLOBALS_H
#define _GLOBALS_H
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
typedef uint8_t byte;
#define lowByte(w) ((uint8_t)((w) & 0xff))
#define highByte(w) ((uint8_t)((w) >> 8))
#ifndef PAYLOAD_BUFFER_SIZE
#define PAYLOAD_BUFFER_SIZE 51
#endif
#ifndef SENDCYCLE
#define SENDCYCLE 30
#endif
#ifndef PAYLOAD_OPENSENSEBOX
#define PAYLOAD_OPENSENSEBOX 0
#endif
enum snifftype_t { MAC_SNIFF_WIFI, MAC_SNIFF_BLE, MAC_SNIFF_BLE_ENS };
typedef struct __attribute__((packed)) {
  char version[10] = "";
  uint8_t loradr;
  uint8_t txpower;
  uint8_t adrmode;
  uint8_t screensaver;
  uint8_t screenon;
  uint8_t countermode;
  int16_t rssilimit;
  uint8_t sendcycle;
  uint16_t sleepcycle;
  uint16_t wakesync;
  uint8_t wifichancycle;
  uint16_t wifichanmap;
  uint8_t blescantime;
  uint8_t blescan;
  uint8_t wifiscan;
  uint8_t wifiant;
  uint8_t rgblum;
  uint8_t payloadmask;
} configData_t;
typedef struct {
  int32_t latitude{};
  int32_t longitude{};
  uint8_t satellites{};
  uint16_t hdop{};
  int16_t altitude{};
} gpsStatus_t;
typedef struct {
  float iaq;
  uint8_t iaq_accuracy;
  float temperature;
  float humidity;
  float pressure;
  float raw_temperature;
  float raw_humidity;
  float gas;
} bmeStatus_t;
typedef struct {
  float pm10;
  float pm25;
} sdsStatus_t;
#endif
