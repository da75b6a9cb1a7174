// empty host stand-in: src/payload.cpp needs nothing from sds011read.h
