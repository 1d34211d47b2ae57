/* log: see log.h. */
