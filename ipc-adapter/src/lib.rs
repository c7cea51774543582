//! Greengrass IPC adapter: bridges local pub/sub to the classification service.
