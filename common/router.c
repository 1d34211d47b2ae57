/* router: see router.h. */
