// empty host stand-in: src/payload.cpp needs nothing from gpsread.h
