// The slice of Vue's API that docs/react.md's composable uses, with Vue's own
// signatures, so the example is type-checked against the SDK without making
// Vue a dependency of this repository.
export interface Ref<T> {
  value: T;
}
export interface ShallowRef<T> {
  value: T;
}
export declare function ref<T>(value: T): Ref<T>;
export declare function shallowRef<T>(value: T): ShallowRef<T>;
export declare function onMounted(hook: () => unknown): void;
export declare function onUnmounted(hook: () => unknown): void;
