/* config: see config.h. */
